# -*- test-case-name: tests.tunnelservice.test_sigv4 -*-
# mypy: disallow-untyped-calls=False
# (this module calls botocore, which has no annotations)
"""
Signature Version 4 on the management API, for a service others can reach.

With C{--credentials FILE} (the AWS shared-credentials format of
``~/.aws/credentials``: every profile's ``aws_access_key_id`` and
``aws_secret_access_key`` is a key pair the service accepts) every
management API request must be signed as the real
``api.tunneling.iot.<region>.amazonaws.com`` wants it, so that boto3 and the
AWS CLI with the right keys work unchanged and nobody else can list tunnels
or rotate their tokens.

The expected signature is computed by botocore's own signer
(C{botocore.auth.SigV4Auth}) over the request as received, with the
request's own ``X-Amz-Date`` and the headers it says it signed, and
compared with C{hmac.compare_digest}: this module parses and checks the
C{Authorization} header and the clock, and never hand-computes SigV4.
botocore is imported only here, and this module only when credentials are
configured, so a plain ``pip install aws-localproxy`` (local proxies on
devices) does not carry it; ``pip install 'aws-localproxy[tunnelservice]'``
does.

Refusals have the status, C{__type} and message of the real service (an AWS
Coral JSON service), and say no more than it does about what was wrong:

  - no C{Authorization}: 403 C{MissingAuthenticationTokenException};
  - an C{Authorization} that is not a complete SigV4 one, a missing or
    malformed C{X-Amz-Date}, C{host} not signed: 400
    C{IncompleteSignatureException};
  - a request time more than 5 minutes from the service's clock, a
    credential scope of another date, region or service: 403
    C{InvalidSignatureException};
  - an access key ID no profile has: 403 C{UnrecognizedClientException};
  - any other difference (wrong secret, a signed header or the body changed
    on the way): 403 C{InvalidSignatureException} with the one message that
    does not say which part differed.

Secrets and signatures are never logged nor put in a message.
"""

from __future__ import annotations

import calendar
import hmac
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple, Union

#: The SigV4 service name botocore signs with (the model's ``signingName``).
SIGNING_NAME = "IoTSecuredTunneling"
ALGORITHM = "AWS4-HMAC-SHA256"
#: How far a request's X-Amz-Date may be from the service's clock, as the real API allows.
MAX_SKEW_SECONDS = 5 * 60
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
#: Coral's namespace for the errors every AWS JSON service shares.
_CORAL = "com.amazon.coral.service#"

#: Where key pairs come from: a shared-credentials file, or access key ID to secret.
CredentialsSource = Union[None, str, Mapping[str, str]]

INSTALL_HINT = "pip install 'aws-localproxy[tunnelservice]'"


class CredentialsError(ValueError):
    """A credentials file the service refuses to use (the message says why)."""


@dataclass(frozen=True)
class SignatureRefused(Exception):
    """Why a request is refused: the HTTP status and the real API's error shape."""

    status: int
    error_type: str
    message: str

    def body(self) -> Dict[str, str]:
        """The JSON body: C{__type} with Coral's namespace, as AWS sends it."""
        return {"__type": _CORAL + self.error_type, "message": self.message}


def _missing() -> SignatureRefused:
    return SignatureRefused(
        403, "MissingAuthenticationTokenException", "Request is missing Authentication Token"
    )


def _incomplete(message: str) -> SignatureRefused:
    return SignatureRefused(400, "IncompleteSignatureException", message)


def _invalid(message: str) -> SignatureRefused:
    return SignatureRefused(403, "InvalidSignatureException", message)


_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def _unrecognized() -> SignatureRefused:
    return SignatureRefused(
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


def require_botocore() -> None:
    """Raise L{CredentialsError} with what to install when botocore is missing."""
    try:
        import botocore.auth  # noqa: F401
    except ImportError:
        raise CredentialsError(
            "checking signatures needs botocore, which is not installed: %s" % (INSTALL_HINT,)
        ) from None


def load_credentials(path: str) -> Dict[str, str]:
    """
    The key pairs of the AWS shared-credentials file C{path}: access key ID
    to secret access key.

    Refused (L{CredentialsError}): a file group or others may read or write
    (anyone who can read it can sign requests), a profile with only one half
    of a pair, one access key ID with two secrets, a file with no pair.
    Profiles without keys (e.g. ``role_arn`` ones) are skipped.
    """
    require_botocore()
    from botocore.configloader import raw_config_parse
    from botocore.exceptions import BotoCoreError

    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise CredentialsError("cannot read %s: %s" % (path, error.strerror)) from None
    if not stat.S_ISREG(mode):
        raise CredentialsError("%s is not a file" % (path,))
    if mode & 0o077:
        raise CredentialsError(
            "%s is open to group or others (mode %04o): anyone who can read it can sign "
            "requests; run: chmod 600 %s" % (path, stat.S_IMODE(mode), path)
        )
    try:
        profiles = raw_config_parse(path)
    except BotoCoreError as error:
        raise CredentialsError("%s is not an AWS credentials file: %s" % (path, error)) from None
    keys: Dict[str, str] = {}
    for profile, values in profiles.items():
        access_key = values.get("aws_access_key_id")
        secret_key = values.get("aws_secret_access_key")
        if access_key is None and secret_key is None:
            continue
        if not (isinstance(access_key, str) and access_key.strip()) or not (
            isinstance(secret_key, str) and secret_key.strip()
        ):
            raise CredentialsError(
                "profile [%s] of %s needs both aws_access_key_id and aws_secret_access_key"
                % (profile, path)
            )
        access_key, secret_key = access_key.strip(), secret_key.strip()
        if access_key in keys and not hmac.compare_digest(
            keys[access_key].encode(), secret_key.encode()
        ):
            raise CredentialsError(
                "profile [%s] of %s gives access key %s a second, different secret"
                % (profile, path, access_key)
            )
        keys[access_key] = secret_key
    if not keys:
        raise CredentialsError(
            "%s has no profile with aws_access_key_id and aws_secret_access_key" % (path,)
        )
    return keys


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    scope: Tuple[str, ...]  # (date, region, service, terminator)
    signed_headers: List[str]
    signed_headers_text: str
    signature: str


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete("Authorization header must use the %s algorithm." % (ALGORITHM,))
    parameters: Dict[str, str] = {}
    for part in rest.split(","):
        name, equals, part_value = part.strip().partition("=")
        if equals:
            parameters[name] = part_value.strip()
    missing = [
        name for name in ("Credential", "Signature", "SignedHeaders") if not parameters.get(name)
    ]
    if missing:
        raise _incomplete(
            " ".join("Authorization header requires '%s' parameter." % (name,) for name in missing)
        )
    credential = parameters["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, "
            "e.g. keyid/date/region/service/term."
        )
    text = parameters["SignedHeaders"]
    return _Authorization(
        access_key=credential[0],
        scope=tuple(credential[1:]),
        signed_headers=text.split(";"),
        signed_headers_text=text,
        signature=parameters["Signature"],
    )


class SignatureCheck:
    """
    Checks the SigV4 signature of management API requests against a set of
    key pairs, on the service's clock.

    @ivar clock: seconds since the epoch, the service's now; tests replace it
        to play a request late (a replay after the skew window).
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        region: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        require_botocore()
        if not credentials:
            raise CredentialsError("no key pairs: every request would be refused")
        self._credentials = dict(credentials)
        self._region = region
        self.clock = clock

    @property
    def access_key_ids(self) -> List[str]:
        """The accepted access key IDs (not secret: AWS logs them too)."""
        return sorted(self._credentials)

    def check(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, List[str]],
        body: bytes,
    ) -> str:
        """
        Check a request as received: C{headers} maps lower-case names to
        every value received.  Returns the access key ID that signed it, or
        raises L{SignatureRefused}.
        """
        authorizations = headers.get("authorization", [])
        if not authorizations:
            raise _missing()
        if len(authorizations) > 1:
            raise _incomplete("Only one Authorization header is allowed.")
        authorization = _parse_authorization(authorizations[0])
        dates = headers.get("x-amz-date", [])
        if len(dates) != 1:
            raise _incomplete("Authorization header requires existence of an 'X-Amz-Date' header.")
        timestamp = dates[0].strip()
        if not _TIMESTAMP_RE.match(timestamp):
            raise _incomplete(
                "X-Amz-Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z')."
            )
        try:
            signed_at = calendar.timegm(time.strptime(timestamp, SIGV4_TIMESTAMP))
        except ValueError:
            raise _incomplete(
                "X-Amz-Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z')."
            ) from None
        self._check_time(timestamp, signed_at)
        if "host" not in authorization.signed_headers:
            raise _incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.")
        self._check_scope(authorization.scope, timestamp)
        secret = self._credentials.get(authorization.access_key)
        if secret is None:
            raise _unrecognized()
        for name in authorization.signed_headers:
            if name not in headers:
                # A header signed but not received cannot be what was signed.
                raise _invalid(_MISMATCH)
        expected = _expected_signature(
            authorization, secret, self._region, method, uri, headers, body, timestamp
        )
        if not hmac.compare_digest(
            expected.encode("ascii"), authorization.signature.encode("utf-8", "replace")
        ):
            raise _invalid(_MISMATCH)
        return authorization.access_key

    def _check_time(self, timestamp: str, signed_at: int) -> None:
        now = self.clock()
        if signed_at < now - MAX_SKEW_SECONDS:
            raise _invalid(
                "Signature expired: %s is now earlier than %s (%s - 5 min.)"
                % (timestamp, _format(now - MAX_SKEW_SECONDS), _format(now))
            )
        if signed_at > now + MAX_SKEW_SECONDS:
            raise _invalid(
                "Signature not yet current: %s is still later than %s (%s + 5 min.)"
                % (timestamp, _format(now + MAX_SKEW_SECONDS), _format(now))
            )

    def _check_scope(self, scope: Tuple[str, ...], timestamp: str) -> None:
        date, region, service, terminator = scope
        problems = []
        if region != self._region:
            problems.append("Credential should be scoped to a valid region, not '%s'." % (region,))
        if service != SIGNING_NAME:
            problems.append(
                "Credential should be scoped to correct service: '%s'." % (SIGNING_NAME,)
            )
        if terminator != "aws4_request":
            problems.append(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'."
                % (terminator,)
            )
        if date != timestamp[:8]:
            problems.append(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                "of date from HTTP: '%s' != '%s', from '%s'." % (date, timestamp[:8], timestamp)
            )
        if problems:
            raise _invalid(" ".join(problems))


def _format(seconds: float) -> str:
    return time.strftime(SIGV4_TIMESTAMP, time.gmtime(seconds))


def _expected_signature(
    authorization: _Authorization,
    secret: str,
    region: str,
    method: str,
    uri: str,
    headers: Mapping[str, List[str]],
    body: bytes,
    timestamp: str,
) -> str:
    """botocore's signature of the request as received, with the headers it says it signed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders
    from botocore.credentials import Credentials

    signed = HTTPHeaders()
    for name in authorization.signed_headers:
        for value in headers[name]:
            signed[name] = value

    class _AsReceived(SigV4Auth):  # type: ignore[misc]
        # Exactly the headers the client listed, as received (botocore's own
        # choice leaves some out and adds a Host from the URL).
        def headers_to_sign(self, request: Any) -> Any:
            return signed

        def signed_headers(self, headers_to_sign: Any) -> str:
            # The list as the client sent it: a list botocore would have
            # written otherwise (unsorted, upper case) then fails, as on AWS.
            return authorization.signed_headers_text

    # No headers on the request itself: botocore would take a received
    # X-Amz-Content-SHA256 as the body's hash; without it, it hashes the body.
    request = AWSRequest(method=method, url="https://localhost" + uri, data=body)
    request.context["timestamp"] = timestamp
    signer = _AsReceived(Credentials(authorization.access_key, secret), SIGNING_NAME, region)
    canonical = signer.canonical_request(request)
    result: str = signer.signature(signer.string_to_sign(request, canonical), request)
    return result
