"""
The Prometheus metrics, scraped over HTTP from a registry that is its own
registry and a pull-through cache of a second one, after a known sequence
of pushes, pulls and cache hits and misses: every figure exact.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import OCI_MANIFEST, RegistryProcess, SyncClient, SyncResponse, freePort, sha256, withQuery

DASHBOARD = Path(__file__).parent.parent / "examples" / "grafana-dashboard.json"

#: Samples by name, each by its labels.
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(debug: SyncClient) -> Samples:
    response = debug.request("GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def by(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """
    The samples of C{name}, by the values of C{labels}.
    """
    found = {}
    for labelled, value in samples.get(name, {}).items():
        values = dict(labelled)
        found[tuple(values[label] for label in labels)] = value
    return found


class Traffic:
    """
    The registry under test, its upstream, and what was sent and received.
    """

    def __init__(self, api: SyncClient, debug: SyncClient, upstream: SyncClient) -> None:
        self.api = api
        self.debug = debug
        self.upstream = upstream
        self.received = 0
        self.sent: dict[str, int] = {}
        self.bodies: dict[str, int] = {}
        self.codes: dict[tuple[str, str, str], int] = {}

    def request(
        self, handler: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> SyncResponse:
        response = self.api.request(method, path, body, headers)
        key = (str(response.status), handler, method.lower())
        self.codes[key] = self.codes.get(key, 0) + 1
        self.sent[handler] = self.sent.get(handler, 0) + len(response.body)
        self.bodies[handler] = self.bodies.get(handler, 0) + len(body)
        return response

    def push(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        started = self.request("blob_upload", "POST", f"/v2/{name}/blobs/uploads/")
        assert started.status == 202
        done = self.request("blob_upload_chunk", "PUT", withQuery(started.location(), digest=digest), data)
        assert done.status == 201, done
        return digest

    def settled(self, done: Callable[[Samples], bool]) -> Samples:
        deadline = time.monotonic() + 20
        while True:
            samples = scrape(self.debug)
            if done(samples) or time.monotonic() > deadline:
                return samples
            time.sleep(0.05)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    directory = tmp_path_factory.mktemp("metrics")
    upstream = RegistryProcess(str(directory / "upstream"))
    upstream.start()
    debugPort = freePort()
    config = directory / "config.yml"
    # Garbage collection that reclaims nothing younger than an hour, and
    # an endpoint that is not there: their metrics, with nothing to say.
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /unused\n"
        "  maintenance:\n    gc:\n      enabled: true\n      graceperiod: 1h\n"
        "notifications:\n  endpoints:\n    - name: gone\n"
        f"      url: http://127.0.0.1:{freePort()}/events\n      threshold: 1\n      backoff: 1h\n"
        "proxy:\n  allowpush: true\n  revalidate: 1h\n  maxsize: 1GB\n  evictioninterval: 1s\n"
        f"  upstreams:\n    - name: up\n      remoteurl: http://127.0.0.1:{upstream.port}\n"
        f"http:\n  debug:\n    addr: 127.0.0.1:{debugPort}\n    prometheus:\n      enabled: true\n"
    )
    process = RegistryProcess(str(directory / "root"), str(config))
    try:
        process.start()
        yield Traffic(SyncClient(process.port), SyncClient(debugPort), SyncClient(upstream.port))
    finally:
        process.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def observed(traffic: Traffic) -> tuple[Traffic, Samples, dict[str, int]]:
    """
    The sequence, once for the module's tests: what it scraped after, and
    the figures it must show.
    """
    layers = [os.urandom(3000), os.urandom(70_000)]
    manifest, _, blobs = traffic.upstream.pushImage("lib/app", "v1", layers)
    sizes = [len(json.dumps({"architecture": "amd64", "os": "linux"}).encode()), *map(len, layers)]
    t = traffic
    assert t.request("base", "GET", "/v2/").status == 200

    # Our own repository: pushed, then pulled.
    ownLayer = os.urandom(5000)
    ownDigest = t.push("mine/app", ownLayer)
    configDigest = t.push("mine/app", b"{}")
    own = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": configDigest,
                "size": 2,
            },
            "layers": [{"mediaType": "application/octet-stream", "digest": ownDigest, "size": 5000}],
        }
    ).encode()
    accept = {"Accept": OCI_MANIFEST}
    put = t.request("manifest", "PUT", "/v2/mine/app/manifests/v1", own, {"Content-Type": OCI_MANIFEST})
    assert put.status == 201
    assert t.request("manifest", "GET", "/v2/mine/app/manifests/v1", headers=accept).body == own
    assert t.request("blob", "GET", f"/v2/mine/app/blobs/{ownDigest}").body == ownLayer
    assert t.request("blob", "HEAD", f"/v2/mine/app/blobs/{ownDigest}").status == 200
    assert t.request("tags", "GET", "/v2/mine/app/tags/list").status == 200

    # The upstream's: missed, fetched, then hit.
    for _ in range(2):
        assert t.request("manifest", "GET", "/v2/up/lib/app/manifests/v1", headers=accept).body == manifest
        for digest, size in zip(blobs, sizes, strict=True):
            assert len(t.request("blob", "GET", f"/v2/up/lib/app/blobs/{digest}").body) == size
        # Every fetch stored before the hits.
        t.settled(lambda s: by(s, "txregistry_proxy_downloads")[()] == 0)
    unknown = t.request("manifest", "GET", "/v2/up/lib/app/manifests/nope", headers=accept)
    assert unknown.status == 404
    assert t.request("other", "GET", "/v2/nothing/here").status == 404

    cached = sum(sizes)
    samples = t.settled(lambda s: by(s, "txregistry_proxy_size_bytes").get(()) == cached)
    expected = {"manifest": len(manifest), "blobs": cached}
    return t, samples, expected


def test_http_requests(observed: tuple[Traffic, Samples, dict[str, int]]) -> None:
    """
    registry:2's HTTP metrics: every request counted by code, handler (its
    route names) and method; durations by handler and method; the bytes of
    bodies in and out, by handler and in all; nothing in flight after.
    """
    t, samples, _ = observed
    assert by(samples, "registry_http_requests_total", "code", "handler", "method") == t.codes
    durations: dict[tuple[str, str], float] = {}
    for (_, handler, method), n in t.codes.items():
        durations[handler, method] = durations.get((handler, method), 0) + n
    assert by(samples, "registry_http_request_duration_seconds_count", "handler", "method") == durations
    assert by(samples, "registry_http_request_size_bytes_sum", "handler") == {
        (h,): n for h, n in t.bodies.items()
    }
    assert by(samples, "registry_http_response_size_bytes_sum", "handler") == {
        (h,): n for h, n in t.sent.items()
    }
    assert set(by(samples, "registry_http_in_flight_requests", "handler").values()) == {0}
    assert by(samples, "txregistry_http_received_bytes_total")[()] == sum(t.bodies.values())
    assert by(samples, "txregistry_http_sent_bytes_total")[()] == sum(t.sent.values())
    assert by(samples, "txregistry_uploads_in_progress")[()] == 0
    bucket = by(samples, "registry_http_request_duration_seconds_bucket", "handler", "method", "le")
    assert bucket["base", "get", "+Inf"] == 1
    assert "60.0" in {le for _, _, le in bucket}


def test_cache_and_upstream(observed: tuple[Traffic, Samples, dict[str, int]]) -> None:
    """
    registry:2's proxy counters and ours: three manifest requests (a miss,
    a hit, an unknown tag missed), six of blobs (three misses, three hits),
    and what the upstream was asked and sent.
    """
    _, samples, expected = observed
    manifest, blobs = expected["manifest"], expected["blobs"]
    assert by(samples, "registry_proxy_requests_total", "type") == {("blob",): 6, ("manifest",): 3}
    assert by(samples, "registry_proxy_hits_total", "type") == {("blob",): 3, ("manifest",): 1}
    assert by(samples, "registry_proxy_misses_total", "type") == {("blob",): 3, ("manifest",): 2}
    assert by(samples, "registry_proxy_pulled_bytes_total", "type") == {
        ("blob",): blobs,
        ("manifest",): manifest,
    }
    pushed = {("blob",): 2 * blobs, ("manifest",): 2 * manifest}
    assert by(samples, "registry_proxy_pushed_bytes_total", "type") == pushed
    assert by(samples, "txregistry_proxy_hit_ratio", "type") == {("blob",): 0.5, ("manifest",): 1 / 3}
    assert by(samples, "txregistry_upstream_requests_total", "upstream", "kind", "code") == {
        ("up", "manifest", "200"): 1,
        ("up", "manifest", "404"): 1,
        ("up", "blob", "200"): 3,
    }
    assert by(samples, "txregistry_upstream_bytes_total", "upstream", "kind") == {
        ("up", "blob"): blobs,
        ("up", "manifest"): manifest,
    }
    assert by(samples, "txregistry_upstream_breaker_open", "upstream") == {("up",): 0}
    assert by(samples, "txregistry_proxy_downloads")[()] == 0
    assert by(samples, "txregistry_proxy_download_clients")[()] == 0
    assert by(samples, "txregistry_proxy_size_bytes")[()] == blobs
    assert by(samples, "txregistry_proxy_maxsize_bytes")[()] == 10**9  # "1GB", as registry:2 reads sizes
    assert by(samples, "txregistry_proxy_evictions_total", "type") == {("blob",): 0, ("manifest",): 0}
    assert by(samples, "txregistry_proxy_evicted_bytes_total")[()] == 0


def test_storage_actions(observed: tuple[Traffic, Samples, dict[str, int]]) -> None:
    """
    registry:2's storage timings, by its names of the driver and actions.
    """
    _, samples, _ = observed
    counts = by(samples, "registry_storage_action_seconds_count", "driver", "action")
    for action in ("GetContent", "PutContent", "Reader", "Writer", "Stat", "Move"):
        assert counts["filesystem", action] > 0, action


def test_dashboard_queries_metrics_that_exist(observed: tuple[Traffic, Samples, dict[str, int]]) -> None:
    """
    Every metric the example Grafana dashboard queries is in a scrape.
    """
    _, samples, _ = observed
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"\b(?:registry|txregistry|process)_[a-z_]+\b", target["expr"]))
    assert len(queried) > 20
    assert queried - set(samples) == set()


def test_collection_and_notifications(observed: tuple[Traffic, Samples, dict[str, int]]) -> None:
    """
    The run of garbage collection at start reclaimed nothing young; the
    endpoint that is not there has every event still to deliver, none
    dropped.
    """
    _, samples, _ = observed
    assert by(samples, "txregistry_gc_runs_total") == {(): 1}
    assert by(samples, "txregistry_gc_removed_total", "type") == {("blob",): 0, ("manifest",): 0}
    assert by(samples, "txregistry_gc_reclaimed_bytes_total") == {(): 0}
    events = by(samples, "registry_notifications_events_total", "type", "endpoint")
    pending = by(samples, "registry_notifications_pending_total", "endpoint")[("gone",)]
    assert pending > 0
    assert events[("Events", "gone")] == pending
    assert events[("Successes", "gone")] == 0
    assert events[("Failures", "gone")] >= 1
    assert by(samples, "txregistry_notifications_dropped_total", "endpoint") == {("gone",): 0}


def test_blob_descriptor_cache(observed: tuple[Traffic, Samples, dict[str, int]]) -> None:
    """
    registry:2's counters of the blob descriptor cache, by 2.8's names and
    by 3.x's: every request a hit or a miss, none an error.
    """
    _, samples, _ = observed
    counts = by(samples, "registry_storage_cache_total", "type")
    assert counts[("Request",)] == counts[("Hit",)] + counts[("Miss",)] > 0
    assert counts[("Hit",)] > 0
    assert counts[("Error",)] == 0
    assert by(samples, "registry_storage_cache_requests_total") == {(): counts[("Request",)]}
    assert by(samples, "registry_storage_cache_hits_total") == {(): counts[("Hit",)]}
    assert by(samples, "registry_storage_cache_errors_total") == {(): 0}
