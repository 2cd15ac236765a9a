"""
The debug listener (C{http.debug.addr}), as registry:2's: health at
C{/debug/health} and, when enabled, the Prometheus metrics at their path;
none of it on the API's port, and none of the API on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import RegistryProcess, SyncClient, freePort
from txregistry.config import ConfigError, parseConfig


@pytest.fixture
def debugged(tmp_path: object) -> Iterator[tuple[SyncClient, SyncClient]]:
    """
    A registry with its debug listener and metrics at C{/prom}: a client
    of its API and one of its debug listener.
    """
    directory = str(tmp_path)
    debugPort = freePort()
    config = os.path.join(directory, "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /unused\n"
            f"http:\n  debug:\n    addr: 127.0.0.1:{debugPort}\n"
            "    prometheus:\n      enabled: true\n      path: /prom\n"
        )
    process = RegistryProcess(os.path.join(directory, "root"), config)
    process.start()
    try:
        yield SyncClient(process.port), SyncClient(debugPort)
    finally:
        process.stop()


def test_health_and_metrics_on_the_debug_listener(debugged: tuple[SyncClient, SyncClient]) -> None:
    """
    A healthy registry answers 200 and C{{}}; the metrics parse as
    Prometheus's text format.
    """
    _, debug = debugged
    health = debug.request("GET", "/debug/health")
    assert (health.status, health.body) == (200, b"{}")
    assert health.headers["content-type"].startswith("application/json")
    metrics = debug.request("GET", "/prom")
    assert metrics.status == 200
    names = {family.name for family in text_string_to_metric_families(metrics.body.decode())}
    assert "process_resident_memory_bytes" in names


def test_apart_from_the_api(debugged: tuple[SyncClient, SyncClient]) -> None:
    """
    Neither port serves the other's paths.
    """
    api, debug = debugged
    assert api.request("GET", "/debug/health").status == 404
    assert api.request("GET", "/prom").status == 404
    assert debug.request("GET", "/v2/").status == 404
    assert debug.request("GET", "/metrics").status == 404
    assert debug.request("POST", "/debug/health").status == 405


@pytest.mark.parametrize(
    ("debug", "message"),
    [
        (
            "    prometheus:\n      enabled: true\n",
            "http.debug.addr: missing: the metrics are served on the debug listener",
        ),
        (
            "    addr: localhost:5001\n    prometheus:\n      enabled: true\n      path: /debug/health\n",
            "http.debug.prometheus.path: expected a path like /metrics, got '/debug/health'",
        ),
        ("    addr: localhost:99999\n", "http.debug.addr:"),
    ],
)
def test_bad_debug_sections_stop_start_up(debug: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parseConfig("version: 0.1\nstorage:\n  inmemory: {}\nhttp:\n  debug:\n" + debug)
    assert str(raised.value).startswith(message)


def test_off_unless_an_address_is_given() -> None:
    config = parseConfig("version: 0.1\nstorage:\n  inmemory: {}\nhttp:\n  debug:\n    prometheus: {}\n")
    assert config.http.debug is None
