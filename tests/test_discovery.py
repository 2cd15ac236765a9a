"""
Listing tags and repositories, a page at a time, and the referrers API.
"""

import pytest_twisted

from tests.helpers import Client, sha256
from txregistry.manifest import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST


async def follow(client: Client, path: str, key: str) -> tuple[list[str], list[str]]:
    """
    Every item of a paginated listing, and the links that were followed.
    """
    items, links = [], []
    while True:
        response = await client.request("GET", path)
        assert response.code == 200, response
        items += response.json()[key]
        link = response.header("Link")
        if link is None:
            return items, links
        links.append(link)
        assert link.endswith('>; rel="next"')
        path = link[1 : link.index(">")]


@pytest_twisted.ensureDeferred
async def test_tags_sorted_and_paginated(registry: Client) -> None:
    body, _ = await registry.pushImage("team/app", "b", [b"x"])
    tags = ["c", "a", "1.0", "latest", "B", "a-1"]
    for tag in tags:
        assert (await registry.pushManifest("team/app", tag, body)).code == 201
    everything = sorted([*tags, "b"])
    whole = await registry.request("GET", "/v2/team/app/tags/list")
    assert whole.json() == {"name": "team/app", "tags": everything}
    assert whole.header("Link") is None
    paged, links = await follow(registry, "/v2/team/app/tags/list?n=2", "tags")
    assert paged == everything
    assert len(links) == 3
    assert links[0] == f'</v2/team/app/tags/list?n=2&last={everything[1]}>; rel="next"'
    after = await registry.request("GET", "/v2/team/app/tags/list?last=a-1")
    assert after.json()["tags"] == [t for t in everything if t > "a-1"]
    none = await registry.request("GET", "/v2/team/app/tags/list?n=0")
    assert none.json()["tags"] == []


@pytest_twisted.ensureDeferred
async def test_tags_of_unknown_repository(registry: Client) -> None:
    response = await registry.request("GET", "/v2/nobody/tags/list")
    assert (response.code, response.errorCode()) == (404, "NAME_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_bad_page_size(registry: Client) -> None:
    await registry.pushImage("r", "t", [b"x"])
    # "%C2%B2" is a superscript two: a digit to str.isdigit, not to int().
    for n in ("-1", "abc", "1e3", "%C2%B2"):
        response = await registry.request("GET", f"/v2/r/tags/list?n={n}")
        assert (response.code, response.errorCode()) == (400, "PAGINATION_NUMBER_INVALID"), n


@pytest_twisted.ensureDeferred
async def test_catalog(registry: Client) -> None:
    names = ["zeta", "alpha/beta", "alpha/beta/gamma", "team/blobs", "x/manifests", "a.b_c-d"]
    for name in names:
        await registry.pushImage(name, "latest", [name.encode()])
    # Only blobs, no manifest: not a repository yet, as in registry:2.
    await registry.pushBlob("blobs-only", b"data")
    repositories, links = await follow(registry, "/v2/_catalog?n=4", "repositories")
    assert repositories == sorted(names)
    assert len(links) == 1
    whole = await registry.request("GET", "/v2/_catalog")
    assert whole.json() == {"repositories": sorted(names)}


@pytest_twisted.ensureDeferred
async def test_empty_catalog(registry: Client) -> None:
    response = await registry.request("GET", "/v2/_catalog")
    assert response.json() == {"repositories": []}


@pytest_twisted.ensureDeferred
async def test_names_like_endpoints(registry: Client) -> None:
    for name in ("team/blobs", "x/manifests", "a/tags", "b/referrers", "blobs/uploads", "c/blobs/uploads"):
        body, digest = await registry.pushImage(name, "latest", [b"layer"])
        response = await registry.request("GET", f"/v2/{name}/manifests/latest")
        assert response.body == body, name
        assert (await registry.request("GET", f"/v2/{name}/tags/list")).json()["tags"] == ["latest"]
        location = (await registry.request("POST", f"/v2/{name}/blobs/uploads/")).header("Location")
        assert location.endswith(f"/v2/{name}/blobs/uploads/" + location.rsplit("/", 1)[1])


async def pushReferrer(client: Client, name: str, subject: str, artifactType: str, note: str) -> str:
    empty = await client.pushBlob(name, b"{}")
    layer = await client.pushBlob(name, note.encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifactType,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": layer, "size": len(note)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 100},
        "annotations": {"note": note},
    }
    response = await client.pushManifest(name, sha256(__import__("json").dumps(manifest).encode()), manifest)
    assert response.code == 201
    assert response.header("OCI-Subject") == subject
    return response.header("Docker-Content-Digest")


@pytest_twisted.ensureDeferred
async def test_referrers(registry: Client) -> None:
    _, subject = await registry.pushImage("app", "v1", [b"x"])
    signature = await pushReferrer(registry, "app", subject, "application/vnd.example.sig", "signed")
    sbom = await pushReferrer(registry, "app", subject, "application/vnd.example.sbom", "sbom")
    response = await registry.request("GET", f"/v2/app/referrers/{subject}")
    assert response.code == 200
    assert response.header("Content-Type") == OCI_INDEX
    index = response.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    byDigest = {d["digest"]: d for d in index["manifests"]}
    assert set(byDigest) == {signature, sbom}
    assert byDigest[signature]["artifactType"] == "application/vnd.example.sig"
    assert byDigest[signature]["annotations"] == {"note": "signed"}
    assert byDigest[signature]["mediaType"] == OCI_MANIFEST
    filtered = await registry.request(
        "GET", f"/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom"
    )
    assert filtered.header("OCI-Filters-Applied") == "artifactType"
    assert [d["digest"] for d in filtered.json()["manifests"]] == [sbom]
    # Deleting a referrer takes it off the list.
    assert (await registry.request("DELETE", f"/v2/app/manifests/{sbom}")).code == 202
    after = await registry.request("GET", f"/v2/app/referrers/{subject}")
    assert [d["digest"] for d in after.json()["manifests"]] == [signature]


@pytest_twisted.ensureDeferred
async def test_referrers_of_unknown_subject(registry: Client) -> None:
    response = await registry.request("GET", f"/v2/app/referrers/{sha256(b'unknown')}")
    assert response.code == 200
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


@pytest_twisted.ensureDeferred
async def test_referrer_pushed_before_its_subject(registry: Client) -> None:
    subject = sha256(b"a manifest that is not pushed yet")
    referrer = await pushReferrer(registry, "app", subject, "application/vnd.example.sig", "early")
    response = await registry.request("GET", f"/v2/app/referrers/{subject}")
    assert [d["digest"] for d in response.json()["manifests"]] == [referrer]
