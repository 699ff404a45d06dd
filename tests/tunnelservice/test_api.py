"""
The management API against boto3 and the AWS CLI, over TLS with the service's CA.

boto3 and the CLI block, so they run in a thread (boto3) or a child process
(the CLI) while the reactor serves them.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from aws_localproxy.tunnelservice.testing import start_tunnel_service
from tests.support import tunnelclient
from tests.support.e2e import aws_cli, awscli_missing, boto3_missing, tunneling_client

try:
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover
    pass


class ApiTestCase(unittest.TestCase):
    skip = boto3_missing

    use_tls = True

    @inlineCallbacks
    def setUp(self) -> Any:
        self.running = yield start_tunnel_service(reactor, self.mktemp(), use_tls=self.use_tls)
        self.addCleanup(self.running.stop)
        self.client = tunneling_client(self, self.running, verify=None if self.use_tls else False)

    def call(self, method: str, **kwargs: Any) -> Any:
        """Run a boto3 call in a thread; fires with its response."""
        function: Callable[..., Any] = getattr(self.client, method)
        return deferToThread(function, **kwargs)

    @inlineCallbacks
    def assertClientError(self, code: str, method: str, **kwargs: Any) -> Any:
        try:
            yield self.call(method, **kwargs)
        except ClientError as error:
            self.assertEqual(error.response["Error"]["Code"], code)
            return error
        self.fail("%s did not fail" % (method,))


class ApiTests(ApiTestCase):
    @inlineCallbacks
    def test_open_and_describe(self) -> Any:
        opened = yield self.call(
            "open_tunnel",
            description="a test",
            tags=[{"key": "team", "value": "iot"}],
            destinationConfig={"thingName": "thing-1", "services": ["SSH", "HTTP"]},
            timeoutConfig={"maxLifetimeTimeoutMinutes": 30},
        )
        tunnel_id = opened["tunnelId"]
        self.assertTrue(opened["tunnelArn"].endswith(":tunnel/" + tunnel_id))
        self.assertNotEqual(opened["sourceAccessToken"], opened["destinationAccessToken"])
        described = (yield self.call("describe_tunnel", tunnelId=tunnel_id))["tunnel"]
        self.assertEqual(described["status"], "OPEN")
        self.assertEqual(described["description"], "a test")
        self.assertEqual(
            described["destinationConfig"], {"thingName": "thing-1", "services": ["SSH", "HTTP"]}
        )
        self.assertEqual(described["timeoutConfig"], {"maxLifetimeTimeoutMinutes": 30})
        self.assertEqual(described["tags"], [{"key": "team", "value": "iot"}])
        self.assertEqual(described["sourceConnectionState"]["status"], "DISCONNECTED")
        self.assertEqual(described["destinationConnectionState"]["status"], "DISCONNECTED")
        self.assertIn("lastUpdatedAt", described)
        self.assertIn("lastUpdatedAt", described["sourceConnectionState"])

    @inlineCallbacks
    def test_tokens_work_on_the_data_plane(self) -> Any:
        opened = yield self.call("open_tunnel", destinationConfig={"services": ["SSH"]})
        source = yield tunnelclient.connect(
            reactor, self.running, mode="source", token=opened["sourceAccessToken"]
        )
        self.addCleanup(tunnelclient.close_client, source)
        (message,) = yield source.wait_messages(1)
        self.assertEqual(list(message.availableServiceIds), ["SSH"])
        described = (yield self.call("describe_tunnel", tunnelId=opened["tunnelId"]))["tunnel"]
        self.assertEqual(described["sourceConnectionState"]["status"], "CONNECTED")
        self.assertEqual(described["destinationConnectionState"]["status"], "DISCONNECTED")

    @inlineCallbacks
    def test_describe_unknown(self) -> Any:
        yield self.assertClientError(
            "ResourceNotFoundException", "describe_tunnel", tunnelId="nope"
        )

    @inlineCallbacks
    def test_list_paging(self) -> Any:
        ids = []
        for i in range(5):
            opened = yield self.call("open_tunnel", description="t%d" % i)
            ids.append(opened["tunnelId"])
        seen = []
        token = None
        pages = 0
        while True:
            kwargs: Any = {"maxResults": 2}
            if token:
                kwargs["nextToken"] = token
            page = yield self.call("list_tunnels", **kwargs)
            pages += 1
            self.assertLessEqual(len(page["tunnelSummaries"]), 2)
            seen += [s["tunnelId"] for s in page["tunnelSummaries"]]
            token = page.get("nextToken")
            if not token:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(seen, list(reversed(ids)))
        everything = yield self.call("list_tunnels")
        self.assertEqual(len(everything["tunnelSummaries"]), 5)
        self.assertNotIn("nextToken", everything)

    @inlineCallbacks
    def test_list_by_thing(self) -> Any:
        yield self.call("open_tunnel", destinationConfig={"thingName": "a", "services": ["S"]})
        other = yield self.call(
            "open_tunnel", destinationConfig={"thingName": "b", "services": ["S"]}
        )
        page = yield self.call("list_tunnels", thingName="b")
        self.assertEqual([s["tunnelId"] for s in page["tunnelSummaries"]], [other["tunnelId"]])

    @inlineCallbacks
    def test_rotate(self) -> Any:
        opened = yield self.call("open_tunnel", destinationConfig={"services": ["SSH"]})
        source = yield tunnelclient.connect(
            reactor, self.running, mode="source", token=opened["sourceAccessToken"]
        )
        self.addCleanup(tunnelclient.close_client, source)
        rotated = yield self.call(
            "rotate_tunnel_access_token", tunnelId=opened["tunnelId"], clientMode="SOURCE"
        )
        self.assertEqual(rotated["tunnelArn"], opened["tunnelArn"])
        self.assertNotIn("destinationAccessToken", rotated)
        self.assertNotEqual(rotated["sourceAccessToken"], opened["sourceAccessToken"])
        was_clean, code, reason = yield source.when_closed()
        self.assertEqual(reason, "Access token rotated")
        old = yield tunnelclient.connect(
            reactor, self.running, mode="source", token=opened["sourceAccessToken"]
        )
        self.assertEqual(old.status, 401)
        new = yield tunnelclient.connect(
            reactor, self.running, mode="source", token=rotated["sourceAccessToken"]
        )
        self.addCleanup(tunnelclient.close_client, new)
        self.assertTrue(new.opened)
        both = yield self.call(
            "rotate_tunnel_access_token", tunnelId=opened["tunnelId"], clientMode="ALL"
        )
        self.assertIn("sourceAccessToken", both)
        self.assertIn("destinationAccessToken", both)

    @inlineCallbacks
    def test_tags(self) -> Any:
        opened = yield self.call("open_tunnel", tags=[{"key": "a", "value": "1"}])
        arn = opened["tunnelArn"]
        yield self.call(
            "tag_resource",
            resourceArn=arn,
            tags=[{"key": "b", "value": "2"}, {"key": "a", "value": "3"}],
        )
        tags = yield self.call("list_tags_for_resource", resourceArn=arn)
        self.assertEqual(tags["tags"], [{"key": "a", "value": "3"}, {"key": "b", "value": "2"}])
        yield self.call("untag_resource", resourceArn=arn, tagKeys=["a"])
        tags = yield self.call("list_tags_for_resource", resourceArn=arn)
        self.assertEqual(tags["tags"], [{"key": "b", "value": "2"}])
        yield self.assertClientError(
            "ResourceNotFoundException", "list_tags_for_resource", resourceArn=arn + "x"
        )

    @inlineCallbacks
    def test_close_and_delete(self) -> Any:
        opened = yield self.call("open_tunnel", destinationConfig={"services": ["SSH"]})
        tunnel_id = opened["tunnelId"]
        source = yield tunnelclient.connect(
            reactor, self.running, mode="source", token=opened["sourceAccessToken"]
        )
        destination = yield tunnelclient.connect(
            reactor, self.running, mode="destination", token=opened["destinationAccessToken"]
        )
        yield self.call("close_tunnel", tunnelId=tunnel_id)
        for client in (source, destination):
            was_clean, code, reason = yield client.when_closed()
            self.assertEqual((code, reason), (1000, "Tunnel closed"))
        described = (yield self.call("describe_tunnel", tunnelId=tunnel_id))["tunnel"]
        self.assertEqual(described["status"], "CLOSED")
        self.assertEqual(described["sourceConnectionState"]["status"], "DISCONNECTED")
        yield self.call("close_tunnel", tunnelId=tunnel_id, delete=True)
        yield self.assertClientError(
            "ResourceNotFoundException", "describe_tunnel", tunnelId=tunnel_id
        )
        yield self.assertClientError("ResourceNotFoundException", "close_tunnel", tunnelId="nope")

    @inlineCallbacks
    def test_validation(self) -> Any:
        yield self.assertClientError(
            "ValidationException",
            "open_tunnel",
            timeoutConfig={"maxLifetimeTimeoutMinutes": 721},
        )


class PlainApiTests(ApiTestCase):
    """--no-tls serves the API over http://."""

    use_tls = False

    @inlineCallbacks
    def test_open(self) -> Any:
        opened = yield self.call("open_tunnel")
        self.assertIn("tunnelId", opened)


class CliTests(unittest.TestCase):
    """The real ``aws`` CLI (awscli's Python package) against the service."""

    if awscli_missing:
        skip = awscli_missing

    @inlineCallbacks
    def setUp(self) -> Any:
        self.running = yield start_tunnel_service(reactor, self.mktemp())
        self.addCleanup(self.running.stop)

    def aws(self, *args: str) -> Any:
        return aws_cli(self, self.running, *args)

    @inlineCallbacks
    def test_open_describe_close(self) -> Any:
        opened = yield self.aws("open-tunnel", "--destination-config", "services=SSH")
        tunnel_id = opened["tunnelId"]
        described = yield self.aws("describe-tunnel", "--tunnel-id", tunnel_id)
        self.assertEqual(described["tunnel"]["status"], "OPEN")
        self.assertEqual(described["tunnel"]["destinationConfig"]["services"], ["SSH"])
        yield self.aws("close-tunnel", "--tunnel-id", tunnel_id)
        described = yield self.aws("describe-tunnel", "--tunnel-id", tunnel_id)
        self.assertEqual(described["tunnel"]["status"], "CLOSED")
