"""
Serving a registry from your own Twisted program, beside your own pages.

    python examples/embed.py tcp:5000 ./registry-data
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

import txregistry


def main(listen: str = "tcp:5000", root: str = "registry-data") -> None:
    config = txregistry.parseConfig(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
    )
    site = Resource()
    site.putChild(b"", Data(b"my service, with a registry at /v2/\n", "text/plain"))
    # The registry's API must be at /v2 of the host, as clients expect.
    site.putChild(b"v2", txregistry.resource(config))
    factory = Site(site)
    # Without this, twisted.web reads whole request bodies before the registry
    # sees them; with it, uploads stream to storage as they arrive.
    factory.requestFactory = txregistry.RegistryRequest
    endpoints.serverFromString(reactor, listen).listen(factory)
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:])
