"""
Property tests: the reference grammar, and chunked uploads split at random.
"""

import hashlib
import re
from collections import Counter
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


# The digest grammar as the image-spec writes it ("Digests"), and the encodings
# of the algorithms it registers, compiled independently of txregistry.reference.
SPEC_DIGEST = re.compile(r"[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
SPEC_ENCODED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}
HEX_LENGTHS = {"sha256": 64, "sha512": 128}


def expectedParse(text: str) -> str:
    """
    What L{Digest.parse} must do with C{text} by the spec: C{"accepted"}, or
    the code of the error it raises.
    """
    if SPEC_DIGEST.fullmatch(text) is None:
        return "DIGEST_INVALID"
    # The grammar allows exactly one colon.
    algorithm, encoded = text.split(":")
    encoding = SPEC_ENCODED.get(algorithm)
    if encoding is None:
        return "UNSUPPORTED"
    return "accepted" if encoding.fullmatch(encoded) else "DIGEST_INVALID"


knownAlgorithms = st.sampled_from(sorted(HEX_LENGTHS))


@st.composite
def hexOf(draw: st.DrawFn, algorithm: str) -> str:
    """
    Hex of the right length for C{algorithm}: the digest of some content, or
    any hex digits (which shrink to simple ones).
    """
    if draw(st.booleans()):
        return hashlib.new(algorithm, draw(st.binary(max_size=64))).hexdigest()
    length = HEX_LENGTHS[algorithm]
    return draw(st.text(alphabet="0123456789abcdef", min_size=length, max_size=length))


@st.composite
def validDigests(draw: st.DrawFn) -> str:
    algorithm = draw(knownAlgorithms)
    return f"{algorithm}:{draw(hexOf(algorithm))}"


# Well-formed digests of algorithms that are not ours: some near ours, some
# made from the algorithm grammar's components and separators.
algorithmComponent = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
otherAlgorithms = st.one_of(
    st.sampled_from(["sha384", "sha256+b64u", "sha-256", "sha512.t", "md5", "blake3", "sha"]),
    st.builds(
        lambda first, rest: first + "".join(separator + component for separator, component in rest),
        algorithmComponent,
        st.lists(st.tuples(st.sampled_from("+._-"), algorithmComponent), max_size=3),
    ),
)
encodings = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=_-", min_size=1, max_size=140
)
unsupportedDigests = st.builds("{}:{}".format, otherAlgorithms, encodings)


@st.composite
def nearMisses(draw: st.DrawFn) -> str:
    """
    A digest of ours, spoiled in one way: hex of the wrong length or case,
    a bad separator or algorithm, a character out of place.
    """
    algorithm = draw(knownAlgorithms)
    length = HEX_LENGTHS[algorithm]
    encoded = draw(hexOf(algorithm))
    how = draw(st.sampled_from(["length", "case", "separator", "algorithm", "character"]))
    if how == "length":
        wrong = draw(st.sampled_from([0, 1, 32, 40, 63, 65, 127, 129, 64 if length == 128 else 128]))
        return f"{algorithm}:{(encoded * 3)[:wrong]}"
    if how == "case":
        return f"{algorithm}:{encoded.upper()}"
    if how == "separator":
        separator = draw(st.sampled_from(["", "::", "=", "+", "-", "/", "@", " :", ": ", "\uff1a"]))
        return f"{algorithm}{separator}{encoded}"
    if how == "algorithm":
        spoilt = draw(
            st.sampled_from(["SHA256", "Sha512", "-sha256", "sha256-", "sha+.256", "sha__512", "sha 256", ""])
        )
        return f"{spoilt}:{encoded}"
    text = f"{algorithm}:{encoded}"
    where = draw(st.integers(min_value=0, max_value=len(text)))
    character = draw(st.sampled_from(list("gG=_-:/ \n\t\x00\u0663\u00e9\uff41")))
    replace = draw(st.booleans())
    return text[:where] + character + text[where + int(replace) :]


digestTexts = st.one_of(validDigests(), nearMisses(), unsupportedDigests, st.text(max_size=150))


def test_digest_parse_agrees_with_the_spec() -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=800, deadline=None)
    @given(digestTexts)
    def parse(text: str) -> None:
        expected = expectedParse(text)
        outcomes[expected] += 1
        try:
            digest = Digest.parse(text)
        except RegistryError as e:
            assert e.code == expected, e
        else:
            assert expected == "accepted", digest
            assert str(digest) == text
            assert (digest.algorithm, digest.hex) == tuple(text.split(":"))

    parse()
    # Every way out of the parser was taken, each often enough to mean it.
    total = sum(outcomes.values())
    for outcome in ("accepted", "DIGEST_INVALID", "UNSUPPORTED"):
        assert outcomes[outcome] >= total // 10, outcomes


@st.composite
def splits(draw: st.DrawFn) -> tuple[bytes, list[int], bool]:
    size = draw(st.integers(min_value=0, max_value=200_000))
    # Made by a generator seeded from hypothesis, so a failure replays and
    # shrinks (too many bytes to draw one by one).
    content = draw(st.randoms(use_true_random=True)).randbytes(size)
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
