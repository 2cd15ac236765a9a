"""
S3 requests are signed with SigV4 of txregistry's own, exactly as
botocore signs them: headers and presigned URLs alike.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from unittest.mock import patch

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from txregistry.storage.s3client import Credentials, Endpoint, Signer, encodeQuery


@pytest.mark.parametrize("token", [None, "session token"])
@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "body"),
    [
        ("GET", "docker/registry/v2/blobs/sha256/ab/ab12/data", {}, {"Range": "bytes=5-"}, b""),
        ("PUT", "a key/with ünicode+and~marks", {"partNumber": "3", "uploadId": "x/y=z"}, {}, b"part"),
        ("POST", "", {"delete": None}, {"Content-MD5": "  two   spaces "}, b"<Delete/>"),
        ("GET", "", {"list-type": "2", "prefix": "a b/", "max-keys": "1000"}, {}, b""),
    ],
)
def test_signatures_are_botocores(
    method: str,
    key: str,
    query: dict[str, str | None],
    headers: dict[str, str],
    body: bytes,
    token: str | None,
) -> None:
    """
    Requests are signed without botocore, which would cost an instance
    some 9 MiB of modules, and signed as botocore signs them: headers and
    presigned URLs alike.
    """
    now = 1_700_000_000.25
    url = Endpoint("http://127.0.0.1:9000", "registry", pathStyle=True).objectURL(key, encodeQuery(query))
    ours = Credentials("AKID", "secret/key+", token)
    theirs = BotocoreCredentials("AKID", "secret/key+", token)
    signer = Signer("eu-west-1")
    with patch("botocore.auth.get_current_datetime", lambda: datetime.fromtimestamp(now, timezone.utc)):
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        S3SigV4Auth(theirs, "s3", "eu-west-1").add_auth(request)
        payload = hashlib.sha256(body).hexdigest()
        assert signer.headers(ours, now, method, url, headers, payload) == dict(request.headers.items())
        if not query:
            presigned = AWSRequest(method=method, url=url)
            S3SigV4QueryAuth(theirs, "s3", "eu-west-1", expires=1200).add_auth(presigned)
            assert signer.presign(ours, now, method, url, 1200) == presigned.url
