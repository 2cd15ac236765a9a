"""
Where registry:2 keeps each thing, so that a store written by either
registry is read by the other.

    /docker/registry/v2/blobs/<alg>/<hex[:2]>/<hex>/data
    /docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link
    /docker/registry/v2/repositories/<name>/_manifests/revisions/<alg>/<hex>/link
    /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link
    /docker/registry/v2/repositories/<name>/_uploads/<uuid>/data
    /docker/registry/v2/repositories/<name>/_uploads/<uuid>/startedat

Referrers are ours alone (registry:2 has no referrers API) and live where
it does not look:

    /docker/registry/v2/repositories/<name>/_referrers/<alg>/<subject hex>/<alg>/<hex>/link

So is the record of a repository's last push (when: the file's
modification time; the size of the image pushed: the content), in a
directory, as registry:2's walk of the repositories stops looking at a
directory's entries at the first file named with a leading C{_}:

    /docker/registry/v2/repositories/<name>/_summary/lastpush

So is what the pull-through cache knows of when content was last pulled,
for eviction, by repository and kind (C{_blobs} or C{_manifests}):

    /docker/registry/v2/_proxy/repositories/<name>/_<kind>/<alg>/<hex>

and, on a cache of a default upstream that takes pushes, which
repositories are the registry's own (a marker each):

    /docker/registry/v2/_proxy/own/<name>/_own

and, in a fleet of caches on one store, which instance is fetching a blob
(a lease each):

    /docker/registry/v2/_proxy/leases/<alg>/<hex>

and, for garbage collection while the registry runs, the lease of the
instance collecting, when each blob was last used, and the blobs a sweep
has set aside before it looks at their use a last time:

    /docker/registry/v2/_gc/lease
    /docker/registry/v2/_gc/lastrun
    /docker/registry/v2/_gc/uses/<alg>/<hex>
    /docker/registry/v2/_gc/hidden/<alg>/<hex>
    /docker/registry/v2/_gc/links/<alg>/<hex>

(the last: the repositories that linked a blob set aside, so that a run
stopped midway puts their links back too)
"""

from __future__ import annotations

from txregistry.reference import Digest

ROOT = "/docker/registry/v2"
REPOSITORIES = f"{ROOT}/repositories"
BLOBS = f"{ROOT}/blobs"


def blobDirectory(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blobData(digest: Digest) -> str:
    return f"{blobDirectory(digest)}/data"


def layerLink(name: str, digest: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_layers/{digest.algorithm}/{digest.hex}/link"


def layers(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_layers"


def manifests(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests"


def revisionLink(name: str, digest: Digest) -> str:
    return f"{manifests(name)}/revisions/{digest.algorithm}/{digest.hex}/link"


def tags(name: str) -> str:
    return f"{manifests(name)}/tags"


def tag(name: str, tag: str) -> str:
    return f"{tags(name)}/{tag}"


def tagCurrentLink(name: str, tag: str) -> str:
    return f"{tags(name)}/{tag}/current/link"


def tagIndexLink(name: str, tag: str, digest: Digest) -> str:
    return f"{tags(name)}/{tag}/index/{digest.algorithm}/{digest.hex}/link"


def uploads(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads"


def upload(name: str, uuid: str) -> str:
    return f"{uploads(name)}/{uuid}"


def uploadData(name: str, uuid: str) -> str:
    return f"{uploads(name)}/{uuid}/data"


def uploadStartedAt(name: str, uuid: str) -> str:
    return f"{uploads(name)}/{uuid}/startedat"


def referrers(name: str, subject: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_referrers/{subject.algorithm}/{subject.hex}"


def referrerLink(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers(name, subject)}/{referrer.algorithm}/{referrer.hex}/link"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def lastPush(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_summary/lastpush"


PROXY_REPOSITORIES = f"{ROOT}/_proxy/repositories"
PROXY_OWN = f"{ROOT}/_proxy/own"
PROXY_LEASES = f"{ROOT}/_proxy/leases"


def proxyRepository(name: str) -> str:
    return f"{PROXY_REPOSITORIES}/{name}"


def proxyOwn(name: str) -> str:
    return f"{PROXY_OWN}/{name}/_own"


def proxyLease(digest: Digest) -> str:
    return f"{PROXY_LEASES}/{digest.algorithm}/{digest.hex}"


def proxyEntry(name: str, kind: str, digest: Digest) -> str:
    return f"{PROXY_REPOSITORIES}/{name}/_{kind}/{digest.algorithm}/{digest.hex}"


GC_LEASE = f"{ROOT}/_gc/lease"
GC_LAST_RUN = f"{ROOT}/_gc/lastrun"
GC_USES = f"{ROOT}/_gc/uses"
GC_HIDDEN = f"{ROOT}/_gc/hidden"
GC_HIDDEN_LINKS = f"{ROOT}/_gc/links"


def gcUse(digest: Digest) -> str:
    return f"{GC_USES}/{digest.algorithm}/{digest.hex}"


def gcHidden(digest: Digest) -> str:
    return f"{GC_HIDDEN}/{digest.algorithm}/{digest.hex}"


def gcHiddenLinks(digest: Digest) -> str:
    return f"{GC_HIDDEN_LINKS}/{digest.algorithm}/{digest.hex}"


def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]
