"""
The log an operator reads: C{log.formatter} (text, and registry:2's json and
logstash) with C{log.fields}; what C{log.level} lets through; access-log
lines with the duration, the bytes sent and the request id that the error
response and the request's debug lines share.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import bcrypt
import pytest

from tests.helpers import RegistryProcess, SyncClient
from txregistry import ConfigError, parseConfig

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def configFile(directory: str, level: str = "debug", formatter: str | None = None, extra: str = "") -> str:
    path = os.path.join(directory, "config.yml")
    with open(path, "w") as f:
        f.write(
            f"version: 0.1\nlog:\n  level: {level}\n"
            + (f"  formatter: {formatter}\n" if formatter else "")
            + "  fields:\n    service: registry\n    environment: test\n"
            + "storage:\n  filesystem:\n    rootdirectory: /ignored\n"
            + extra
        )
    return path


@contextmanager
def running(directory: str, config: str, name: str = "store") -> Iterator[RegistryProcess]:
    process = RegistryProcess(os.path.join(directory, name), config)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def answered(tmp_path: object, level: str = "debug", formatter: str | None = None) -> tuple[str, str]:
    """
    The output of a registry that answered C{/v2/} and a request for a
    manifest it does not have, and that request's X-Request-Id.
    """
    directory = str(tmp_path)
    os.makedirs(directory, exist_ok=True)
    with running(directory, configFile(directory, level, formatter)) as process:
        client = SyncClient(process.port)
        assert client.request("GET", "/v2/").status == 200
        missing = client.request("GET", "/v2/some/thing/manifests/latest")
        assert missing.status == 404
        requestId = missing.headers["X-Request-Id"]
        # Never in what a client parses: the body is registry:2's.
        assert set(json.loads(missing.body)) == {"errors"}
        assert requestId not in missing.body.decode()
    return process.output(), requestId


def test_text(tmp_path: object) -> None:
    output, requestId = answered(tmp_path)
    assert re.fullmatch(UUID, requestId)
    lines = output.splitlines()
    [access] = [line for line in lines if '"GET /v2/some/thing/manifests/latest HTTP/1.1" 404' in line]
    assert f"http.request.id={requestId} " in access
    assert re.search(r" http\.response\.duration=\d+\.\d{3}ms ", access)
    written = re.search(r" http\.response\.written=(\d+) ", access)
    assert written is not None and int(written.group(1)) > 0
    assert " environment=test " in access and access.endswith(" service=registry")
    # The debug lines of that request carry its id: the routing decision
    # and the storage calls it made.
    mine = [line for line in lines if f"http.request.id={requestId}" in line]
    routed = "#debug] routed to ManifestEndpoint: repository 'some/thing', reference 'latest'"
    assert any(routed in line for line in mine)
    read = "#debug] filesystem getContent /docker/registry/v2/repositories/some/thing/_manifests/tags/latest"
    assert any(read in line for line in mine)
    # Only that request's lines.
    assert len(mine) == len([line for line in lines if requestId in line])
    assert all(line.endswith("service=registry") for line in lines if line and not line.startswith("\t"))


def test_the_id_outlasts_a_guard_that_waits(tmp_path: object) -> None:
    """
    A user's first request waits for bcrypt in a thread before its handler
    runs; what the handler logs still carries the request's id.
    """
    directory = str(tmp_path)
    users = os.path.join(directory, "htpasswd")
    with open(users, "wb") as f:
        f.write(b"alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)) + b"\n")
    extra = f"auth:\n  htpasswd:\n    realm: test\n    path: {users}\n"
    with running(directory, configFile(directory, extra=extra)) as process:
        credentials = "Basic " + base64.b64encode(b"alice:secret").decode()
        missing = SyncClient(process.port).request(
            "GET", "/v2/some/thing/manifests/latest", headers={"Authorization": credentials}
        )
        assert missing.status == 404
        requestId = missing.headers["X-Request-Id"]
    mine = [line for line in process.output().splitlines() if f"http.request.id={requestId}" in line]
    assert any("#debug] filesystem getContent" in line for line in mine), mine


@pytest.mark.parametrize(
    "formatter, keys",
    [("json", {"time", "msg", "level"}), ("logstash", {"@timestamp", "@version", "message", "level"})],
)
def test_json_lines(tmp_path: object, formatter: str, keys: set[str]) -> None:
    output, requestId = answered(tmp_path, formatter=formatter)
    documents = [json.loads(line) for line in output.splitlines()]
    message = "msg" if formatter == "json" else "message"
    time = "time" if formatter == "json" else "@timestamp"
    for document in documents:
        assert keys <= set(document), document
        assert document["service"] == "registry" and document["environment"] == "test"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", document[time])
        assert document["level"] in ("debug", "info", "warning", "error")
    if formatter == "logstash":
        assert {document["@version"] for document in documents} == {"1"}
    [access] = [d for d in documents if '"GET /v2/some/thing/manifests/latest HTTP/1.1" 404' in d[message]]
    assert access["level"] == "info"
    assert access["http.request.id"] == requestId
    assert re.fullmatch(r"\d+\.\d{3}ms", access["http.response.duration"])
    assert isinstance(access["http.response.written"], int) and access["http.response.written"] > 0
    mine = [d[message] for d in documents if d.get("http.request.id") == requestId and d["level"] == "debug"]
    assert "routed to ManifestEndpoint: repository 'some/thing', reference 'latest'" in mine
    read = "filesystem getContent /docker/registry/v2/repositories/some/thing/"
    assert any(m.startswith(read) for m in mine)
    [started] = [d for d in documents if d[message].startswith("txregistry: filesystem storage")]
    assert started["level"] == "info" and "http.request.id" not in started


def test_debug_says_more_than_info(tmp_path: object) -> None:
    debug, _ = answered(os.path.join(str(tmp_path), "debug"), "debug")
    info, requestId = answered(os.path.join(str(tmp_path), "info"), "info")
    assert "#debug]" in debug
    assert "#debug]" not in info
    assert len(info.splitlines()) < len(debug.splitlines())
    # At info, the request's id is in its access line alone.
    [line] = [line for line in info.splitlines() if requestId in line]
    assert "[txregistry.access#info]" in line


@pytest.mark.parametrize("level", ["warn", "error"])
def test_warn_and_error_silence_twisted(tmp_path: object, level: str) -> None:
    quiet, requestId = answered(os.path.join(str(tmp_path), level), level)
    loud, _ = answered(os.path.join(str(tmp_path), "info"), "info")
    for line in ("Starting factory", "Stopping factory"):
        assert line in loud
        assert line not in quiet
    assert "#info]" not in quiet.replace("[txregistry.access#info]", "")
    # The access log is registry:2's: log.accesslog.disabled alone turns it off.
    assert f"http.request.id={requestId}" in quiet


def test_bad_formatter_stops_start_up(tmp_path: object) -> None:
    config = configFile(str(tmp_path), formatter="xml")
    result = subprocess.run(
        [sys.executable, "-m", "txregistry.cli", "serve", "--listen", "tcp:0:interface=127.0.0.1", config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert output == "txregistry: log.formatter: expected one of text, json, logstash, got 'xml'\n"


def test_log_section() -> None:
    document = "version: 0.1\nstorage:\n  inmemory:\nlog:\n  formatter: json\n  fields:\n    a: b\n"
    config = parseConfig(document, {})
    assert config.log.formatter == "json"
    assert config.log.fields == {"a": "b"}
    assert config.warnings == ()
    assert parseConfig("version: 0.1\nstorage:\n  inmemory:\n", {}).log.formatter == "text"
    with pytest.raises(ConfigError, match=r"^log.fields.a: expected a string, got \{'b': 'c'\}$"):
        parseConfig("version: 0.1\nstorage:\n  inmemory:\nlog:\n  fields:\n    a:\n      b: c\n", {})


def test_proxy_debug_lines(tmp_path: object) -> None:
    directory = str(tmp_path)
    upstream = RegistryProcess(os.path.join(directory, "upstream"))
    upstream.start()
    try:
        upstreamClient = SyncClient(upstream.port)
        upstreamClient.pushImage("library/base", "v1", [b"layer"])
        proxy = configFile(directory, extra=f"proxy:\n  remoteurl: {upstream.base}\n  timeout: 3s\n")
        with running(directory, proxy, "cache") as process:
            client = SyncClient(process.port)
            first = client.request("GET", "/v2/library/base/manifests/v1")
            second = client.request("GET", "/v2/library/base/manifests/v1")
            assert first.status == second.status == 200
            missing = client.request("GET", "/v2/library/base/manifests/v2")
            assert missing.status == 404
    finally:
        upstream.stop()
    lines = process.output().splitlines()

    def ofRequest(requestId: str) -> list[str]:
        return [line for line in lines if f"http.request.id={requestId}" in line]

    [firstId, secondId] = [
        re.search(f"http.request.id=({UUID})", line).group(1)  # type: ignore[union-attr]
        for line in lines
        if '"GET /v2/library/base/manifests/v1 HTTP/1.1" 200' in line
    ]
    assert any("cache miss: library/base:v1, asking upstream" in line for line in ofRequest(firstId))
    url = re.escape(f"{upstream.base}/v2/library/base/manifests/v1")
    asked = rf"#debug\] upstream GET {url}: 200 in \d+\.\d ms"
    assert any(re.search(asked, line) for line in ofRequest(firstId))
    assert any("cache hit: library/base:v1, revalidated lately" in line for line in ofRequest(secondId))
    assert not any("upstream GET" in line for line in ofRequest(secondId))
    requestId = missing.headers["X-Request-Id"]
    assert any(re.search(r"upstream GET .*/manifests/v2: 404 in", line) for line in ofRequest(requestId))
