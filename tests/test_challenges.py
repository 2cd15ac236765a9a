"""
The pieces of the upstream client that need no network: reading
C{WWW-Authenticate}, keeping tokens, the circuit breaker, and the names
upstreams know repositories by.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from txregistry.config import Upstream
from txregistry.proxy.breaker import CircuitBreaker, CircuitOpen
from txregistry.proxy.challenge import Challenge, TokenCache, parseChallenges
from txregistry.proxy.upstream import remoteName


def test_docker_hub_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert parseChallenges(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/alpine:pull",
            },
        )
    ]


def test_several_challenges() -> None:
    found = parseChallenges(
        'Negotiate, Basic realm="x", Bearer realm="y",scope="a b",error=insufficient_scope'
    )
    assert [c.scheme for c in found] == ["negotiate", "basic", "bearer"]
    assert found[2].params == {"realm": "y", "scope": "a b", "error": "insufficient_scope"}


_TOKEN = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True)
_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@given(st.lists(st.tuples(_TOKEN, st.dictionaries(_TOKEN.map(str.lower), _VALUE, max_size=4)), max_size=3))
def test_quoted_parameters_read_back(challenges: list[tuple[str, dict[str, str]]]) -> None:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = ", ".join(
        scheme + (" " + ", ".join(f"{k}={quote(v)}" for k, v in params.items()) if params else "")
        for scheme, params in challenges
    )
    assert parseChallenges(header) == [Challenge(s.lower(), p) for s, p in challenges]


def test_tokens_expire_early() -> None:
    clock = Clock()
    tokens = TokenCache(clock.seconds)
    tokens.put("repository:a:pull", "t1", 60)
    assert tokens.get("repository:a:pull") == "t1"
    assert tokens.get("repository:b:pull") is None
    clock.advance(54)
    assert tokens.get("repository:a:pull") == "t1"
    clock.advance(2)
    assert tokens.get("repository:a:pull") is None
    # No lifetime given: the token spec's 60 seconds.
    tokens.put("s", "t2", None)
    clock.advance(50)
    assert tokens.get("s") == "t2"


def test_breaker_backs_off_and_lets_one_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock.seconds)
    breaker.check()
    breaker.failed("refused")
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.advance(1)
    breaker.check()  # the one let through to try again...
    with pytest.raises(CircuitOpen):
        breaker.check()  # ...while the others still wait
    breaker.failed("refused again")
    clock.advance(1.5)
    with pytest.raises(CircuitOpen) as raised:
        breaker.check()
    assert raised.value.retryIn == pytest.approx(0.5)
    clock.advance(0.5)
    breaker.check()
    breaker.succeeded()
    breaker.check()
    breaker.check()
    for _ in range(10):
        breaker.failed("down")
    clock.advance(29)
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.advance(1)
    breaker.check()


def test_breaker_holds_for_retry_after() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock.seconds)
    breaker.hold("429", 7)
    clock.advance(6)
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.advance(1)
    breaker.check()
    breaker.check()


@pytest.mark.parametrize(
    ("url", "name", "remote"),
    [
        ("https://registry-1.docker.io", "alpine", "library/alpine"),
        ("https://registry-1.docker.io", "library/alpine", "library/alpine"),
        ("https://registry-1.docker.io", "grafana/grafana", "grafana/grafana"),
        ("https://ghcr.io", "alpine", "alpine"),
    ],
)
def test_docker_hub_official_images(url: str, name: str, remote: str) -> None:
    assert remoteName(Upstream(url), name) == remote
