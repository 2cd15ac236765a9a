"""
Property tests: the reference grammar, and chunked uploads split at random.
"""

import hashlib
import os
import re
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPResponse
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import RegistryProcess, sha256
from txregistry.errors import RegistryError
from txregistry.reference import Digest, checkName, isValidName, isValidTag

# The grammar as the distribution-spec writes it, compiled independently of
# txregistry.reference.
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

component = st.from_regex(r"[a-z0-9]{1,5}((\.|_|__|-{1,3})[a-z0-9]{1,5}){0,2}", fullmatch=True)
names = st.lists(component, min_size=1, max_size=6).map("/".join)
noise = st.text(alphabet="abcAB0._-/:@ %", max_size=40)


@given(names)
def test_spec_names_are_accepted(name: str) -> None:
    assert isValidName(name) == (len(name) <= 255)


@given(noise)
def test_names_agree_with_the_spec(text: str) -> None:
    expected = SPEC_NAME.fullmatch(text) is not None and len(text) <= 255
    assert isValidName(text) == expected
    if not expected:
        with pytest.raises(RegistryError) as caught:
            checkName(text)
        assert caught.value.code == "NAME_INVALID"


@given(st.text(alphabet="abcXYZ019._-:/", max_size=140))
def test_tags_agree_with_the_spec(text: str) -> None:
    assert isValidTag(text) == (SPEC_TAG.fullmatch(text) is not None)


@given(st.binary(max_size=200), st.sampled_from(["sha256", "sha512"]))
def test_digests_round_trip(content: bytes, algorithm: str) -> None:
    digest = Digest.of(content, algorithm)
    assert Digest.parse(str(digest)) == digest
    assert str(digest) == f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


@given(st.text(max_size=150))
def test_digest_parse_accepts_only_digests(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except RegistryError as e:
        assert e.code in ("DIGEST_INVALID", "UNSUPPORTED")
    else:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}", text)
        assert str(digest) == text


@st.composite
def splits(draw: st.DrawFn) -> tuple[bytes, list[int], bool]:
    size = draw(st.integers(min_value=0, max_value=200_000))
    content = os.urandom(size)
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=size), max_size=6)))
    withRanges = draw(st.booleans())
    return content, cuts, withRanges


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPConnection]:
    """
    A registry in a process of its own, and a blocking connection to it: the
    property test's examples run one after another, outside the reactor.
    """
    process = RegistryProcess(str(tmp_path_factory.mktemp("chunks") / "store"))
    process.start()
    connection = HTTPConnection("127.0.0.1", process.port, timeout=30)
    yield connection
    connection.close()
    process.stop()


def call(
    connection: HTTPConnection,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> HTTPResponse:
    connection.request(method, path, body, {"Content-Length": str(len(body)), **(headers or {})})
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    return response


def uploadInChunks(connection: HTTPConnection, content: bytes, cuts: list[int], withRanges: bool) -> None:
    started = call(connection, "POST", "/v2/chunks/blobs/uploads/")
    assert started.status == 202
    location = urlsplit(started.headers["Location"]).path
    bounds = [0, *cuts, len(content)]
    pieces = [content[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    last = pieces.pop()
    offset = 0
    for piece in pieces:
        headers = {}
        if withRanges and piece:
            headers["Content-Range"] = f"{offset}-{offset + len(piece) - 1}"
        response = call(connection, "PATCH", location, piece, headers)
        assert response.status == 202, response.body  # type: ignore[attr-defined]
        offset += len(piece)
        assert response.headers["Range"] == f"0-{max(offset - 1, 0)}"
        location = urlsplit(response.headers["Location"]).path
    digest = sha256(content)
    done = call(connection, "PUT", f"{location}?digest={digest}", last)
    assert done.status == 201, done.body  # type: ignore[attr-defined]
    fetched = call(connection, "GET", f"/v2/chunks/blobs/{digest}")
    assert fetched.body == content  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(splits())
def test_random_chunk_splits_reassemble(server: HTTPConnection, split: tuple[bytes, list[int], bool]) -> None:
    content, cuts, withRanges = split
    uploadInChunks(server, content, cuts, withRanges)
