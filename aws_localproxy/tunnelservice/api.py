# -*- test-case-name: tests.tunnelservice.test_api -*-
# mypy: disallow-untyped-calls=False
# (this module subclasses or calls Twisted/Autobahn APIs that have no annotations)
"""
The management API: the ``iotsecuretunneling`` JSON 1.1 protocol on ``POST /``.

Requests and responses have the shapes of botocore's service model
(``botocore/data/iotsecuretunneling/2018-10-05/service-2.json``), so boto3
and the AWS CLI work against it with ``endpoint_url``.  Without a
L{sigv4.SignatureCheck} requests are not authenticated (any credentials sign
a request that is accepted: a service on loopback for one user); with one
(``--credentials``), every request must carry a valid Signature Version 4
before anything else is looked at, and a refusal has the real API's status
and shape.  Errors are HTTP 400 with ``{"__type", "message"}``, as the JSON
protocol has it.  Tokens appear only in the bodies of OpenTunnel and
RotateTunnelAccessToken, never in logs.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.apishapes import (
    MAX_JSON_DEPTH,
    NEXT_TOKEN_RE,
    ApiError,
    destination_config,
    json_depth,
    optional,
    required,
    resource_arn_of,
    rotation_modes,
    summary_shape,
    tags,
    thing_name_of,
    tunnel_id_of,
    tunnel_shape,
    validation,
)
from aws_localproxy.tunnelservice.model import InvalidTunnel, TunnelNotFound
from aws_localproxy.tunnelservice.registry import TunnelRegistry
from aws_localproxy.tunnelservice.sigv4 import SignatureCheck, SignatureRefused

TARGET_PREFIX = "IoTSecuredTunneling."
CONTENT_TYPE = b"application/x-amz-json-1.1"

#: Tells a thing about its destination's access token:
#: C{(thing_name, destination_access_token, services)} (L{notify.TunnelNotifier.notify}).
NotifyDevice = Callable[[str, str, Sequence[str]], None]


class ManagementApi(Resource):
    """The API's single resource: every action is a ``POST /`` with ``X-Amz-Target``."""

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        registry: TunnelRegistry,
        notify: Optional[NotifyDevice] = None,
        signature_check: Optional[SignatureCheck] = None,
    ) -> None:
        """
        @param signature_check: checks every request's SigV4 signature
            (C{--credentials}); C{None}: requests are not authenticated.
        """
        super().__init__()
        self._registry = registry
        self._notify = notify
        self._signature_check = signature_check
        self._actions: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
            "OpenTunnel": self.open_tunnel,
            "CloseTunnel": self.close_tunnel,
            "DescribeTunnel": self.describe_tunnel,
            "ListTunnels": self.list_tunnels,
            "RotateTunnelAccessToken": self.rotate_tunnel_access_token,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    def render_GET(self, request: Request) -> bytes:
        # Only POST / and GET /tunnel exist; the real service answers 400.
        request.setResponseCode(400)
        return b"Bad request\n"

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"x-amzn-requestid", str(uuid.uuid4()).encode("ascii"))
        if self._signature_check is not None:
            refused = self._refused(request)
            if refused is not None:
                return refused
        target = (request.getHeader(b"x-amz-target") or b"").decode("latin-1")
        action = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
        try:
            handler = self._actions.get(action)
            if handler is None:
                raise ApiError("UnknownOperationException", "Unknown operation %r" % (target,))
            body = self._body(request)
            try:
                result = handler(body)
            except TunnelNotFound as error:
                raise ApiError("ResourceNotFoundException", str(error)) from None
            except InvalidTunnel as error:
                raise validation(str(error)) from None
        except ApiError as error:
            self.log.info(
                "{action} failed: {error_type}: {message}",
                action=action or target,
                error_type=error.error_type,
                message=error.message,
            )
            request.setResponseCode(400)
            return json.dumps({"__type": error.error_type, "message": error.message}).encode()
        self.log.debug("{action} succeeded", action=action)
        return json.dumps(result).encode("utf-8")

    def _refused(self, request: Request) -> Optional[bytes]:
        """
        The refusal of a request without a valid signature (C{None}: valid).
        Logged without any header value: no signature, no key ID.
        """
        assert self._signature_check is not None and request.content is not None
        body = request.content.read()
        request.content.seek(0)
        headers: Dict[str, List[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers.setdefault(name.decode("latin-1").lower(), []).extend(
                value.decode("latin-1") for value in values
            )
        try:
            self._signature_check.check(
                request.method.decode("latin-1"), request.uri.decode("latin-1"), headers, body
            )
        except SignatureRefused as refused:
            peer = request.getClientAddress()
            self.log.info(
                "Management API request from {peer} refused: {error_type}",
                peer=getattr(peer, "host", peer),
                error_type=refused.error_type,
            )
            request.setResponseCode(refused.status)
            return json.dumps(refused.body()).encode()
        return None

    @staticmethod
    def _body(request: Request) -> Dict[str, Any]:
        assert request.content is not None
        raw = request.content.read()
        try:
            body = json.loads(raw or b"{}")
        except RecursionError:
            raise ApiError(
                "SerializationException", "The request body is nested too deeply"
            ) from None
        except ValueError:
            raise ApiError("SerializationException", "The request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError("SerializationException", "The request body is not a JSON object")
        if json_depth(body) > MAX_JSON_DEPTH:
            raise ApiError("SerializationException", "The request body is nested too deeply")
        return body

    # -- actions -------------------------------------------------------

    def open_tunnel(self, body: Dict[str, Any]) -> Dict[str, Any]:
        description = optional(body, "description", str)
        if description is not None and not 1 <= len(description) <= 2048:
            raise validation("description must be 1 to 2048 characters")
        tunnel_tags = tags(body.get("tags"))
        thing_name: Optional[str] = None
        services: List[str] = []
        config = body.get("destinationConfig")
        if config is not None:
            thing_name, services = destination_config(config)
        lifetime = 720
        timeout = optional(body, "timeoutConfig", dict)
        if timeout is not None and timeout.get("maxLifetimeTimeoutMinutes") is not None:
            lifetime = required(timeout, "maxLifetimeTimeoutMinutes", int)
        tunnel = self._registry.open_tunnel(
            services=services,
            max_lifetime_minutes=lifetime,
            description=description,
            thing_name=thing_name,
            tags=tunnel_tags,
            has_destination_config=config is not None,
        )
        if thing_name and self._notify is not None:
            self._notify(thing_name, tunnel.slot(Mode.DESTINATION).access_token, services)
        return {
            "tunnelId": tunnel.tunnel_id,
            "tunnelArn": tunnel.tunnel_arn,
            "sourceAccessToken": tunnel.slot(Mode.SOURCE).access_token,
            "destinationAccessToken": tunnel.slot(Mode.DESTINATION).access_token,
        }

    def close_tunnel(self, body: Dict[str, Any]) -> Dict[str, Any]:
        tunnel_id = tunnel_id_of(body)
        delete = optional(body, "delete", bool) or False
        self._registry.close_tunnel(tunnel_id, delete=delete)
        return {}

    def describe_tunnel(self, body: Dict[str, Any]) -> Dict[str, Any]:
        tunnel = self._registry.get(tunnel_id_of(body))
        return {"tunnel": tunnel_shape(tunnel)}

    def list_tunnels(self, body: Dict[str, Any]) -> Dict[str, Any]:
        thing_name = thing_name_of(body)
        max_results = optional(body, "maxResults", int)
        if max_results is None:
            max_results = 100
        if not 1 <= max_results <= 100:
            raise validation("maxResults must be between 1 and 100")
        next_token = optional(body, "nextToken", str)
        tunnels = self._registry.list_tunnels(thing_name)
        start = 0
        if next_token is not None:
            # The token is the ID of the first tunnel of the next page.
            if not NEXT_TOKEN_RE.match(next_token):
                raise validation("invalid nextToken")
            ids = [t.tunnel_id for t in tunnels]
            if next_token not in ids:
                raise validation("nextToken is no longer valid")
            start = ids.index(next_token)
        page = tunnels[start : start + max_results]
        result: Dict[str, Any] = {"tunnelSummaries": [summary_shape(t) for t in page]}
        if start + max_results < len(tunnels):
            result["nextToken"] = tunnels[start + max_results].tunnel_id
        return result

    def rotate_tunnel_access_token(self, body: Dict[str, Any]) -> Dict[str, Any]:
        tunnel_id = tunnel_id_of(body)
        client_mode = required(body, "clientMode", str)
        modes = rotation_modes(client_mode)
        services: Optional[List[str]] = None
        thing_name = None
        if body.get("destinationConfig") is not None:
            thing_name, services = destination_config(body["destinationConfig"])
        tunnel = self._registry.rotate(tunnel_id, modes, services=services, thing_name=thing_name)
        if Mode.DESTINATION in modes and tunnel.thing_name and self._notify is not None:
            self._notify(
                tunnel.thing_name, tunnel.slot(Mode.DESTINATION).access_token, tunnel.services
            )
        result: Dict[str, Any] = {"tunnelArn": tunnel.tunnel_arn}
        if Mode.SOURCE in modes:
            result["sourceAccessToken"] = tunnel.slot(Mode.SOURCE).access_token
        if Mode.DESTINATION in modes:
            result["destinationAccessToken"] = tunnel.slot(Mode.DESTINATION).access_token
        return result

    def tag_resource(self, body: Dict[str, Any]) -> Dict[str, Any]:
        arn = resource_arn_of(body)
        self._registry.tag(arn, tags(required(body, "tags", list)))
        return {}

    def untag_resource(self, body: Dict[str, Any]) -> Dict[str, Any]:
        arn = resource_arn_of(body)
        keys = required(body, "tagKeys", list)
        if not all(isinstance(key, str) for key in keys):
            raise validation("tagKeys must be strings")
        self._registry.untag(arn, keys)
        return {}

    def list_tags_for_resource(self, body: Dict[str, Any]) -> Dict[str, Any]:
        tunnel = self._registry.by_arn(resource_arn_of(body))
        return {"tags": [dict(tag) for tag in tunnel.tags]}
