"""
The C++ reference's settings document, as the tests of our settings and of
the console script's C{--export-default-settings} compare with it.
"""

#: The reference's --export-default-settings output, byte for byte.
REFERENCE_DOCUMENT = """{
    "tunneling": {
        "proxy": {
            "default_bind_address": "localhost",
            "message": {
                "data_length_size": "2",
                "data_frame_max_size": "65538",
                "max_payload_size": "64512",
                "max_size": "65536"
            },
            "tcp": {
                "connection_retry_count": "5",
                "connection_retry_delay_ms": "2500",
                "read_buffer_size": "131076",
                "max_active_connections": "128"
            },
            "websocket": {
                "ping_period_ms": "20000",
                "retry_delay_ms": "2500",
                "connect_retry_count": "-1",
                "reconnect_on_data_error": "true",
                "subprotocol": "aws.iot.securetunneling-3.0",
                "max_frame_size": "131076",
                "write_buffer_size": "131076",
                "read_buffer_size": "131076"
            },
            "region_endpoint_overrides": {
                "cn-north-1": "data.tunneling.iot.cn-north-1.amazonaws.com.cn",
                "cn-northwest-1": "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn"
            }
        }
    }
}
"""
