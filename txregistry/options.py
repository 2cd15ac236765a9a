"""
The command line of C{twistd registry} and C{txregistry serve}, and of
C{txregistry garbage-collect}.
"""

from __future__ import annotations

import getopt
import os
import sys
from collections.abc import Sequence

import attrs
from twisted.python import usage

from txregistry import __version__
from txregistry.config import Config, Filesystem, loadConfig


class Options(usage.Options):
    synopsis = "[options] [CONFIG]"
    longdesc = (
        "Run a container registry (OCI distribution / Docker Registry HTTP API v2). "
        "With no configuration it keeps its data in ./registry-data and listens on port 5000. "
        "CONFIG is a registry:2 config.yml; REGISTRY_* environment variables override it, "
        "and the options here override both."
    )
    optParameters = [
        ["config", "c", None, "registry:2 configuration file (config.yml)"],
        ["root", None, None, "filesystem storage directory (overrides the configuration's storage)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Twisted endpoint to listen on, such as tcp:5000 (repeatable; default: http.addr, else tcp:5000)
        """
        self["listen"].append(description)

    def opt_version(self) -> None:
        """
        Display txregistry's version and exit.
        """
        print(f"txregistry {__version__}")
        raise SystemExit(0)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        # Options may follow CONFIG (serve config.yml --listen tcp:5000), as
        # GNU getopt allows: put them first for Twisted's parser.
        args = sys.argv[1:] if options is None else list(options)
        try:
            found, positional = getopt.gnu_getopt(args, self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        flags = [
            f"{name}={value}" if f"{name[2:]}=" in self.longOpt else name + value for name, value in found
        ]
        super().parseOptions([*flags, "--", *positional])

    def parseArgs(self, config: str | None = None) -> None:
        if config is not None:
            if self["config"] is not None:
                raise usage.UsageError("give the configuration file once, as --config or as CONFIG")
            self["config"] = config


class GarbageCollectOptions(usage.Options):
    synopsis = "[options] CONFIG"
    longdesc = (
        "Remove blobs no manifest references, as registry:2's registry garbage-collect does; "
        "what is used while it runs is kept (run it with the registry stopped or read-only to "
        "have everything unreferenced removed). CONFIG is a registry:2 config.yml."
    )
    optFlags = [
        ["dry-run", "d", "only say what would be removed"],
        ["delete-untagged", "m", "remove manifests no tag points at, and what only they reference"],
    ]
    optParameters = [
        ["root", None, None, "filesystem storage directory (overrides the configuration's storage)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["config"] = None

    def parseArgs(self, config: str | None = None) -> None:
        self["config"] = config


def configFromOptions(options: usage.Options) -> Config:
    """
    The configuration that C{options} name, with their overrides.

    @raise ConfigError: if it cannot be used.
    """
    path = options["config"]
    if path is None and os.environ.get("REGISTRY_CONFIGURATION_PATH"):
        path = os.environ["REGISTRY_CONFIGURATION_PATH"]
    environ = {k: v for k, v in os.environ.items() if k != "REGISTRY_CONFIGURATION_PATH"}
    config = loadConfig(path, environ)
    if options["root"] is not None:
        storage = attrs.evolve(config.storage, backend=Filesystem(options["root"]))
        config = attrs.evolve(config, storage=storage)
    if options["listen"]:
        config = attrs.evolve(config, http=attrs.evolve(config.http, listen=tuple(options["listen"])))
    return config
