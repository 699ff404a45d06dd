"""
Signature Version 4 on the management API (``localtunnel --credentials``).

L{SignatureCheckTests} drive L{sigv4.SignatureCheck} with requests botocore
signs at a fixed time, without I/O.  L{SignedApiTests} and L{SignedCliTests}
run boto3, the AWS CLI and raw HTTPS requests (signed by botocore, then
replayed or changed) against a service started with credentials; the
service's clock is the check's C{clock}, moved instead of sleeping.
"""

from __future__ import annotations

import datetime
import http.client
import io
import json
import os
import ssl
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, capturedLogs
from twisted.python import usage
from twisted.trial import unittest

from aws_localproxy.tunnelservice import cli, sigv4, tap
from aws_localproxy.tunnelservice.sigv4 import (
    CredentialsError,
    SignatureCheck,
    SignatureRefused,
    load_credentials,
)
from aws_localproxy.tunnelservice.testing import start_tunnel_service
from tests.support import tunnelclient
from tests.support.e2e import (
    aws_cli,
    aws_cli_result,
    awscli_missing,
    boto3_missing,
    tunneling_client,
)

try:
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover
    pass

#: Two teams' key pairs (AWS's documented example key shapes, not real keys).
ALICE = ("AKIAIOSFODNN7ALICE00", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYALICEKEY0")
BOB = ("AKIAIOSFODNN7BOB0000", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYBOBKEY000")
KEYS = dict([ALICE, BOB])
REGION = "us-east-1"
CREDENTIALS_FILE = """\
[default]
aws_access_key_id = {0[0]}
aws_secret_access_key = {0[1]}

[bob]
aws_access_key_id = {1[0]}
aws_secret_access_key = {1[1]}
region = eu-west-1

[assume-role]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = default
""".format(ALICE, BOB)

#: 2026-01-02T03:04:05Z, the time of the unit tests' signatures.
SIGNED_AT = datetime.datetime(2026, 1, 2, 3, 4, 5)
SIGNED_AT_SECONDS = 1767323045.0
HOST = "127.0.0.1:8443"


def sign(
    target: str = "ListTunnels",
    body: bytes = b"{}",
    key: Tuple[str, str] = ALICE,
    region: str = REGION,
    service: str = sigv4.SIGNING_NAME,
    host: str = HOST,
    url: str = "https://127.0.0.1:8443/",
    extra_headers: Optional[Mapping[str, str]] = None,
) -> Dict[str, str]:
    """The headers botocore's signer gives a management API request (Host included)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {
        "Host": host,
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "IoTSecuredTunneling." + target,
        **(extra_headers or {}),
    }
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(*key), service, region).add_auth(request)
    return dict(request.headers.items())


def as_received(headers: Mapping[str, str]) -> Dict[str, List[str]]:
    return {name.lower(): [value] for name, value in headers.items()}


def fill_in(file_path: str, text: str, mode: int = 0o600) -> str:
    with open(file_path, "w") as f:
        f.write(text)
    os.chmod(file_path, mode)
    return file_path


class SignatureCheckTests(unittest.TestCase):
    """The check itself, against requests botocore signed at L{SIGNED_AT}."""

    skip = boto3_missing

    def setUp(self) -> None:
        import botocore.auth

        self.patch(botocore.auth, "get_current_datetime", lambda: SIGNED_AT)
        self.now = SIGNED_AT_SECONDS
        self.check = SignatureCheck(KEYS, REGION, clock=lambda: self.now)

    def refused(
        self, headers: Mapping[str, Any], body: bytes = b"{}", uri: str = "/"
    ) -> SignatureRefused:
        received = {
            name: value if isinstance(value, list) else [value]
            for name, value in ((n.lower(), v) for n, v in headers.items())
        }
        return self.assertRaises(SignatureRefused, self.check.check, "POST", uri, received, body)

    def assertRefused(
        self,
        refused: SignatureRefused,
        status: int,
        error_type: str,
        message: Optional[str] = None,
    ) -> None:
        self.assertEqual((refused.status, refused.error_type), (status, error_type))
        if message is not None:
            self.assertEqual(refused.message, message)
        self.assertEqual(
            refused.body(),
            {"__type": "com.amazon.coral.service#" + error_type, "message": refused.message},
        )

    def assertMismatch(self, refused: SignatureRefused) -> None:
        """Refused with the one message that does not say what differed."""
        self.assertRefused(refused, 403, "InvalidSignatureException", sigv4._MISMATCH)

    def test_accepted(self) -> None:
        """Each profile's pair signs requests the check accepts; it names the key."""
        for key in (ALICE, BOB):
            headers = sign(key=key, body=b'{"maxResults": 5}')
            self.assertEqual(
                self.check.check("POST", "/", as_received(headers), b'{"maxResults": 5}'), key[0]
            )

    def test_skew_window(self) -> None:
        """Five minutes either way are accepted; one second more is not."""
        headers = sign()
        for offset in (-300, 300):
            self.now = SIGNED_AT_SECONDS + offset
            self.check.check("POST", "/", as_received(headers), b"{}")
        self.now = SIGNED_AT_SECONDS + 301
        self.assertRefused(
            self.refused(headers),
            403,
            "InvalidSignatureException",
            "Signature expired: 20260102T030405Z is now earlier than 20260102T030406Z "
            "(20260102T030906Z - 5 min.)",
        )
        self.now = SIGNED_AT_SECONDS - 301
        self.assertRefused(
            self.refused(headers),
            403,
            "InvalidSignatureException",
            "Signature not yet current: 20260102T030405Z is still later than "
            "20260102T030404Z (20260102T025904Z + 5 min.)",
        )

    def test_missing(self) -> None:
        headers = sign()
        del headers["Authorization"]
        self.assertRefused(
            self.refused(headers),
            403,
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        )

    def test_incomplete(self) -> None:
        """Authorization headers that are not complete SigV4 ones."""
        good = sign()["Authorization"]
        credential = good.split("Credential=")[1].split(",")[0]
        for authorization in [
            "Bearer abc",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=%s" % (credential,),
            good.replace("SignedHeaders=", "Signed="),
            good.replace(credential, credential.split("/", 1)[1]),
            good.replace(credential, credential.replace("/aws4_request", "")),
        ]:
            headers = sign()
            headers["Authorization"] = authorization
            self.assertRefused(self.refused(headers), 400, "IncompleteSignatureException")

    def test_two_authorizations(self) -> None:
        headers: Dict[str, Any] = sign()
        headers["Authorization"] = [headers["Authorization"]] * 2
        self.assertRefused(self.refused(headers), 400, "IncompleteSignatureException")

    def test_date(self) -> None:
        """No X-Amz-Date, or not the basic ISO 8601 format: incomplete."""
        headers = sign()
        del headers["X-Amz-Date"]
        self.assertRefused(self.refused(headers), 400, "IncompleteSignatureException")
        for date in ("2026-01-02T03:04:05Z", "20261302T030405Z", "20260102T030405"):
            headers = sign()
            headers["X-Amz-Date"] = date
            self.assertRefused(self.refused(headers), 400, "IncompleteSignatureException")

    def test_host_must_be_signed(self) -> None:
        headers = sign()
        self.assertIn(";host;", headers["Authorization"])
        headers["Authorization"] = headers["Authorization"].replace(";host;", ";")
        self.assertRefused(self.refused(headers), 400, "IncompleteSignatureException")

    def test_scope(self) -> None:
        """Another region, service, or a scope date not the request's: invalid, and why."""
        refused = self.refused(sign(region="eu-west-1"))
        self.assertRefused(refused, 403, "InvalidSignatureException")
        self.assertIn("region, not 'eu-west-1'", refused.message)
        refused = self.refused(sign(service="iot"))
        self.assertRefused(refused, 403, "InvalidSignatureException")
        self.assertIn("correct service: 'IoTSecuredTunneling'", refused.message)
        headers = sign()
        headers["Authorization"] = headers["Authorization"].replace("/20260102/", "/20260101/")
        self.assertIn("Date in Credential scope", self.refused(headers).message)

    def test_unknown_key(self) -> None:
        self.assertRefused(
            self.refused(sign(key=("AKIAIOSFODNN7UNKNOWN", ALICE[1]))),
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )

    def test_wrong_secret(self) -> None:
        self.assertMismatch(self.refused(sign(key=(ALICE[0], BOB[1]))))

    def test_signature_changed(self) -> None:
        headers = sign()
        signature = headers["Authorization"][-64:]
        flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
        headers["Authorization"] = headers["Authorization"][:-64] + flipped
        self.assertMismatch(self.refused(headers))
        headers["Authorization"] = headers["Authorization"][:-64] + "\u00e9" * 64
        self.assertMismatch(self.refused(headers))

    def test_signed_header_changed(self) -> None:
        """X-Amz-Target changed on the way: ListTunnels signed, RotateTunnelAccessToken sent."""
        headers = sign("ListTunnels")
        headers["X-Amz-Target"] = "IoTSecuredTunneling.RotateTunnelAccessToken"
        self.assertMismatch(self.refused(headers))
        headers = sign()
        headers["Host"] = "127.0.0.1:9999"
        self.assertMismatch(self.refused(headers))

    def test_signed_header_missing(self) -> None:
        headers = sign()
        del headers["X-Amz-Target"]
        self.assertMismatch(self.refused(headers))

    def test_body_changed(self) -> None:
        headers = sign(body=b'{"maxResults": 5}')
        self.assertMismatch(self.refused(headers, body=b'{"maxResults": 6}'))
        self.assertMismatch(self.refused(headers, body=b""))

    def test_content_sha256_is_not_trusted(self) -> None:
        """
        A signed X-Amz-Content-SHA256 naming the signed body does not make
        another body pass (botocore's canonical request would take the header
        as the body's hash).
        """
        import hashlib

        body = b'{"maxResults": 5}'
        digest = hashlib.sha256(body).hexdigest()
        headers = sign(body=body, extra_headers={"X-Amz-Content-SHA256": digest})
        self.check.check("POST", "/", as_received(headers), body)
        self.assertMismatch(self.refused(headers, body=b'{"maxResults": 6}'))

    def test_path_changed(self) -> None:
        self.assertMismatch(self.refused(sign(), uri="/other"))

    def test_header_case_and_spaces(self) -> None:
        """Received header names in any case, values with runs of spaces, as SigV4 canonicalises."""
        headers = sign(extra_headers={"X-Custom": "a   b"})
        received = {name.upper(): value for name, value in headers.items()}
        self.assertEqual(self.check.check("POST", "/", as_received(received), b"{}"), ALICE[0])

    def test_no_credentials(self) -> None:
        self.assertRaises(CredentialsError, SignatureCheck, {}, REGION)


class CredentialsFileTests(unittest.TestCase):
    skip = boto3_missing

    def test_profiles(self) -> None:
        """Every profile with a key pair; profiles without keys are skipped."""
        path = fill_in(self.mktemp(), CREDENTIALS_FILE)
        self.assertEqual(load_credentials(path), KEYS)

    def test_open_to_others(self) -> None:
        """A file group or others can read (or write) is refused, and the message says the fix."""
        for mode in (0o644, 0o640, 0o604, 0o620):
            path = fill_in(self.mktemp(), CREDENTIALS_FILE, mode)
            error = self.assertRaises(CredentialsError, load_credentials, path)
            self.assertIn("open to group or others (mode %04o)" % (mode,), str(error))
            self.assertIn("chmod 600 %s" % (path,), str(error))
        self.assertEqual(load_credentials(fill_in(self.mktemp(), CREDENTIALS_FILE, 0o400)), KEYS)

    def test_refused_files(self) -> None:
        for text, expected in [
            ("[a]\naws_access_key_id = AKID\n", "needs both"),
            ("[a]\naws_secret_access_key = s\n", "needs both"),
            ("[a]\nregion = us-east-1\n", "has no profile"),
            ("", "has no profile"),
            (
                "[a]\naws_access_key_id = K\naws_secret_access_key = s1\n"
                "[b]\naws_access_key_id = K\naws_secret_access_key = s2\n",
                "second, different secret",
            ),
            ("not an ini file\n", "not an AWS credentials file"),
        ]:
            path = fill_in(self.mktemp(), text)
            error = self.assertRaises(CredentialsError, load_credentials, path)
            self.assertIn(expected, str(error))
            self.assertNotIn("s1", str(error).replace(path, ""))
            self.assertNotIn("s2", str(error).replace(path, ""))

    def test_missing_file(self) -> None:
        error = self.assertRaises(CredentialsError, load_credentials, self.mktemp())
        self.assertIn("cannot read", str(error))
        directory = self.mktemp()
        os.mkdir(directory, 0o700)
        error = self.assertRaises(CredentialsError, load_credentials, directory)
        self.assertIn("is not a file", str(error))

    def test_no_botocore(self) -> None:
        """Without botocore the error says what to install."""
        saved = sys.modules["botocore.auth"]
        sys.modules["botocore.auth"] = None  # type: ignore[assignment]
        self.addCleanup(sys.modules.__setitem__, "botocore.auth", saved)
        error = self.assertRaises(
            CredentialsError, load_credentials, fill_in(self.mktemp(), CREDENTIALS_FILE)
        )
        self.assertIn("pip install 'aws-localproxy[tunnelservice]'", str(error))


class OptionsTests(unittest.TestCase):
    """--credentials, --allow-unauthenticated and the refusal on a reachable interface."""

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(["--cert-dir", self.mktemp(), *args])
        return options

    def test_loopback_needs_nothing(self) -> None:
        for interface in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
            self.assertIsNone(self.parse("--interface", interface)["credentials-keys"])

    def test_reachable_interface_refused(self) -> None:
        """One line: why, and what to add."""
        for interface in ("0.0.0.0", "::", "192.168.1.10", "myhost"):
            error = self.assertRaises(tap.StartRefused, self.parse, "--interface", interface)
            self.assertEqual(
                str(error),
                "--interface %s is reachable from other machines and the management API would "
                "accept anyone: add --credentials FILE (an AWS credentials file) to require "
                "signed requests, or --allow-unauthenticated to serve it open anyway"
                % (interface,),
            )

    def test_allow_unauthenticated(self) -> None:
        options = self.parse("--interface", "0.0.0.0", "--allow-unauthenticated")
        self.assertIsNone(options["credentials-keys"])

    def test_credentials(self) -> None:
        if boto3_missing:
            raise unittest.SkipTest(boto3_missing)
        path = fill_in(self.mktemp(), CREDENTIALS_FILE)
        options = self.parse("--interface", "0.0.0.0", "--credentials", path)
        self.assertEqual(options["credentials-keys"], KEYS)
        service = tap.makeService(options, reactor)
        self.assertEqual(service._settings["credentials"], KEYS)

    def test_bad_credentials_refused(self) -> None:
        path = fill_in(self.mktemp(), CREDENTIALS_FILE, 0o644)
        error = self.assertRaises(tap.StartRefused, self.parse, "--credentials", path)
        self.assertTrue(str(error).startswith("--credentials: %s is open to group" % (path,)))

    def test_console_script_one_line(self) -> None:
        """The console script prints the reason alone, no usage after it, and exits 2."""
        err = io.StringIO()
        error = self.assertRaises(
            SystemExit, cli.main, ["--interface", "0.0.0.0"], io.StringIO(), err
        )
        self.assertEqual(error.code, 2)
        self.assertEqual(len(err.getvalue().splitlines()), 1)
        self.assertTrue(err.getvalue().startswith("localtunnel: --interface 0.0.0.0 is reachable"))

    def test_twistd_usage_error(self) -> None:
        """twistd shows the same refusal (a UsageError)."""
        self.assertRaises(usage.UsageError, self.parse, "--interface", "0.0.0.0")


class StartupLogTests(unittest.TestCase):
    @inlineCallbacks
    def test_open_on_reachable_interface_is_loud(self) -> Any:
        """Without credentials on a non-loopback interface, a warning at start-up."""
        with capturedLogs() as events:
            running = yield start_tunnel_service(reactor, None, interface="0.0.0.0", use_tls=False)
            self.addCleanup(running.stop)
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("UNAUTHENTICATED", warnings[0]["log_format"])

    @inlineCallbacks
    def test_loopback_or_credentials_are_quiet(self) -> Any:
        settings: List[Dict[str, Any]] = [{"interface": "127.0.0.1"}]
        if not boto3_missing:
            settings.append({"interface": "0.0.0.0", "credentials": KEYS})
        for each in settings:
            with capturedLogs() as events:
                running = yield start_tunnel_service(reactor, None, use_tls=False, **each)
                yield running.stop()
            self.assertEqual([e for e in events if e.get("log_level") == LogLevel.warn], [])


class SignedServiceTestCase(unittest.TestCase):
    skip = boto3_missing

    @inlineCallbacks
    def setUp(self) -> Any:
        self.credentials_file = fill_in(self.mktemp(), CREDENTIALS_FILE)
        self.running = yield start_tunnel_service(
            reactor, self.mktemp(), credentials=self.credentials_file
        )
        self.addCleanup(self.running.stop)
        self.offset = 0.0
        check = self.running.signature_check
        assert check is not None
        # The service's clock, moved by the tests instead of sleeping.
        check.clock = lambda: time.time() + self.offset

    def client(self, key: Tuple[str, str] = ALICE, **kwargs: Any) -> Any:
        return tunneling_client(self, self.running, access_key=key[0], secret_key=key[1], **kwargs)

    @inlineCallbacks
    def refused_call(self, client: Any, method: str, **kwargs: Any) -> Any:
        """Fires with (HTTP status, error code, message) of a boto3 call that must fail."""
        try:
            yield deferToThread(getattr(client, method), **kwargs)
        except ClientError as error:
            return (
                error.response["ResponseMetadata"]["HTTPStatusCode"],
                error.response["Error"]["Code"],
                error.response["Error"]["Message"],
            )
        self.fail("%s was accepted" % (method,))

    def post(self, headers: Mapping[str, str], body: bytes) -> Any:
        """POST / over HTTPS with exactly C{headers}; fires with (status, JSON body)."""

        def send() -> Tuple[int, Any]:
            context = ssl.create_default_context(cafile=self.running.ca_file)
            connection = http.client.HTTPSConnection(
                self.running.host, self.running.port, context=context, timeout=10
            )
            try:
                connection.request("POST", "/", body=body, headers=dict(headers))
                response = connection.getresponse()
                return response.status, json.loads(response.read())
            finally:
                connection.close()

        return deferToThread(send)

    def signed(
        self, target: str = "ListTunnels", body: bytes = b"{}", **kwargs: Any
    ) -> Dict[str, str]:
        """Headers botocore signs, now, for this service's URL."""
        return sign(
            target,
            body,
            host=self.running.endpoint,
            url=self.running.api_url + "/",
            **kwargs,
        )


class SignedApiTests(SignedServiceTestCase):
    @inlineCallbacks
    def test_right_keys(self) -> Any:
        """boto3 with either profile's keys works unchanged."""
        opened = yield deferToThread(self.client().open_tunnel)
        listed = yield deferToThread(self.client(BOB).list_tunnels)
        self.assertEqual([t["tunnelId"] for t in listed["tunnelSummaries"]], [opened["tunnelId"]])

    @inlineCallbacks
    def test_wrong_secret(self) -> Any:
        refused = yield self.refused_call(self.client((ALICE[0], BOB[1])), "open_tunnel")
        self.assertEqual(refused, (403, "InvalidSignatureException", sigv4._MISMATCH))
        self.assertEqual(self.running.registry.list_tunnels(None), [])

    @inlineCallbacks
    def test_unknown_key(self) -> Any:
        refused = yield self.refused_call(self.client(("AKIDEXAMPLE", "x")), "list_tunnels")
        self.assertEqual(
            refused,
            (
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        )

    @inlineCallbacks
    def test_unsigned(self) -> Any:
        refused = yield self.refused_call(self.client(signed=False), "list_tunnels")
        self.assertEqual(
            refused,
            (403, "MissingAuthenticationTokenException", "Request is missing Authentication Token"),
        )

    @inlineCallbacks
    def test_other_region(self) -> Any:
        status, code, message = yield self.refused_call(
            self.client(region="eu-west-1"), "list_tunnels"
        )
        self.assertEqual((status, code), (403, "InvalidSignatureException"))
        self.assertIn("not 'eu-west-1'", message)

    @inlineCallbacks
    def test_malformed_authorization(self) -> Any:
        headers = self.signed()
        headers["Authorization"] = headers["Authorization"].split(",")[0]
        status, body = yield self.post(headers, b"{}")
        self.assertEqual(status, 400)
        self.assertEqual(body["__type"], "com.amazon.coral.service#IncompleteSignatureException")

    @inlineCallbacks
    def test_replay_after_skew_window(self) -> Any:
        """
        A captured request replays within 5 minutes (as on AWS) and is
        refused once the service's clock is past them.
        """
        headers = self.signed()
        for _ in range(2):
            status, body = yield self.post(headers, b"{}")
            self.assertEqual((status, body), (200, {"tunnelSummaries": []}))
        self.offset = 301
        status, body = yield self.post(headers, b"{}")
        self.assertEqual(status, 403)
        self.assertEqual(body["__type"], "com.amazon.coral.service#InvalidSignatureException")
        self.assertTrue(body["message"].startswith("Signature expired: "), body)
        self.assertTrue(body["message"].endswith(" - 5 min.)"), body)

    @inlineCallbacks
    def test_request_from_the_future(self) -> Any:
        """
        A request signed more than 5 minutes ahead of the service's clock is
        refused.  The signature's time has whole seconds and the request
        reaches the service some time after it is signed: a lead of 301 s
        shrank below 300 when that took a second on a loaded machine (the
        exact edge is tested on a fixed clock above), so the lead is 330 s.
        """
        self.offset = -330
        status, body = yield self.post(self.signed(), b"{}")
        self.assertEqual(status, 403)
        self.assertTrue(body["message"].startswith("Signature not yet current: "), body)

    @inlineCallbacks
    def test_body_changed_after_signing(self) -> Any:
        """OpenTunnel signed for one thing, sent for another: refused, nothing opened."""
        signed_body = b'{"destinationConfig": {"thingName": "a", "services": ["SSH"]}}'
        sent_body = b'{"destinationConfig": {"thingName": "b", "services": ["SSH"]}}'
        headers = self.signed("OpenTunnel", signed_body)
        status, body = yield self.post(headers, sent_body)
        self.assertEqual(
            (status, body),
            (
                403,
                {
                    "__type": "com.amazon.coral.service#InvalidSignatureException",
                    "message": sigv4._MISMATCH,
                },
            ),
        )
        self.assertEqual(self.running.registry.list_tunnels(None), [])

    @inlineCallbacks
    def test_signed_header_changed(self) -> Any:
        """A DescribeTunnel turned into RotateTunnelAccessToken on the way: refused, tokens kept."""
        tunnel_id, source_token, _ = self.running.open_tunnel(["SSH"])
        body = json.dumps({"tunnelId": tunnel_id, "clientMode": "ALL"}).encode()
        headers = self.signed("DescribeTunnel", body)
        headers["X-Amz-Target"] = "IoTSecuredTunneling.RotateTunnelAccessToken"
        status, answer = yield self.post(headers, body)
        self.assertEqual((status, answer["message"]), (403, sigv4._MISMATCH))
        client = yield tunnelclient.connect(reactor, self.running, token=source_token)
        self.addCleanup(tunnelclient.close_client, client)
        self.assertTrue(client.opened)

    @inlineCallbacks
    def test_data_plane_tokens(self) -> Any:
        """Tokens of a signed OpenTunnel work on the data plane, which needs no signature."""
        opened = yield deferToThread(
            self.client().open_tunnel, destinationConfig={"services": ["SSH"]}
        )
        source = yield tunnelclient.connect(
            reactor, self.running, mode="source", token=opened["sourceAccessToken"]
        )
        self.addCleanup(tunnelclient.close_client, source)
        destination = yield tunnelclient.connect(
            reactor, self.running, mode="destination", token=opened["destinationAccessToken"]
        )
        self.addCleanup(tunnelclient.close_client, destination)
        (message,) = yield source.wait_messages(1)
        self.assertEqual(list(message.availableServiceIds), ["SSH"])
        yield self.running.wait_for_state(opened["tunnelId"], "destination", "CONNECTED")

    @inlineCallbacks
    def test_refusals_log_no_secrets(self) -> Any:
        with capturedLogs() as events:
            yield self.refused_call(self.client((ALICE[0], BOB[1])), "list_tunnels")
            yield self.refused_call(self.client(("AKIAUNKNOWNKEY000000", "x")), "list_tunnels")
        text = repr([dict(event) for event in events])
        self.assertIn("InvalidSignatureException", text)
        self.assertIn("UnrecognizedClientException", text)
        for secret in (ALICE[0], ALICE[1], BOB[1], "AKIAUNKNOWNKEY000000", "Signature="):
            self.assertNotIn(secret, text)


class SignedCliTests(SignedServiceTestCase):
    """The AWS CLI against a service with credentials."""

    skip = boto3_missing or awscli_missing

    def env(self, key: Tuple[str, str]) -> Dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1]}

    @inlineCallbacks
    def test_right_keys(self) -> Any:
        opened = yield aws_cli(
            self,
            self.running,
            "open-tunnel",
            "--destination-config",
            "services=SSH",
            env=self.env(BOB),
        )
        listed = yield aws_cli(self, self.running, "list-tunnels", env=self.env(ALICE))
        self.assertEqual(listed["tunnelSummaries"][0]["tunnelId"], opened["tunnelId"])

    @inlineCallbacks
    def test_profile_of_the_same_file(self) -> Any:
        """The CLI pointed at the very file the service reads, by profile."""
        env = {
            "AWS_SHARED_CREDENTIALS_FILE": self.credentials_file,
            "AWS_PROFILE": "bob",
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
        }
        listed = yield aws_cli(self, self.running, "list-tunnels", env=env)
        self.assertEqual(listed, {"tunnelSummaries": []})

    @inlineCallbacks
    def test_wrong_keys(self) -> Any:
        for key, code in [
            ((ALICE[0], "wrong"), "InvalidSignatureException"),
            (("AKIAIOSFODNN7UNKNOWN", ALICE[1]), "UnrecognizedClientException"),
        ]:
            status, out, err = yield aws_cli_result(self.running, "list-tunnels", env=self.env(key))
            self.assertNotEqual(status, 0)
            self.assertIn("(%s)" % (code,), err.decode())
