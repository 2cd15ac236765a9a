"""
The C{txregistry} command: C{txregistry serve [CONFIG]}, as registry:2's
C{registry serve CONFIG}: in the foreground, logging to standard output,
until SIGINT or SIGTERM. C{twistd registry} runs the same service with
twistd's daemon options. C{txregistry garbage-collect CONFIG} is
registry:2's C{registry garbage-collect}.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from txregistry import __version__
from txregistry.config import ConfigError
from txregistry.options import GarbageCollectOptions, Options, configFromOptions


class Command(usage.Options):
    synopsis = "Usage: txregistry [options]"
    longdesc = (
        "A container registry (OCI distribution, Docker Registry HTTP API v2) on Twisted. "
        "twistd registry runs the same service with twistd's daemon options."
    )
    subCommands = [
        ["serve", None, Options, "Run the registry in the foreground, logging to standard output"],
        ["garbage-collect", None, GarbageCollectOptions, "Remove blobs no manifest references"],
    ]

    def opt_version(self) -> None:
        """
        Display txregistry's version and exit.
        """
        print(f"txregistry {__version__}")
        raise SystemExit(0)

    def opt_help(self) -> None:
        """
        Display this help (and the serve command's options) and exit.
        """
        print(self)
        print(f"Usage: txregistry serve {Options.synopsis}\n{Options().getUsage()}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("give a command: serve or garbage-collect")


def serve(options: Options) -> None:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from txregistry.logging import lineObserver
    from txregistry.memory import usedOnce

    try:
        # PyYAML is needed for nothing else: let go, it leaves room for the
        # service's modules (0.9 MiB of an idle pull-through cache's RSS).
        with usedOnce("yaml", extensions=["yaml._yaml"]):
            config = configFromOptions(options)
        from txregistry.service import makeService

        # The lines are written as the configuration says from the first.
        log = config.log
        observer = lineObserver(sys.stdout, log.formatter, log.fields, log.level)
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
        service = makeService(config)
    except ConfigError as e:
        raise SystemExit(f"txregistry: {e}") from None
    # Ports are bound here, before the reactor runs: one in use ends start-up.
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def garbageCollect(options: GarbageCollectOptions) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    from txregistry.registry import GarbageCollector
    from txregistry.service import registryOf
    from txregistry.storage import StorageUnavailable

    try:
        registry = registryOf(configFromOptions(options))
    except ConfigError as e:
        raise SystemExit(f"txregistry: {e}") from None

    def say(line: str) -> None:
        print(line, flush=True)

    # No grace period: as registry:2's, for a registry stopped or read-only.
    collector = GarbageCollector(
        registry, reactor, 0.0, options["delete-untagged"], options["dry-run"], say, say
    )

    async def collect(_: object) -> None:
        try:
            await collector.run()
        except StorageUnavailable as e:
            raise SystemExit(f"txregistry: garbage-collect: storage unavailable: {e}") from None
        finally:
            await registry.driver.close()

    react(lambda r: ensureDeferred(collect(r)))


def main(argv: list[str] | None = None) -> None:
    command = Command()
    try:
        command.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"txregistry: {e} (txregistry --help lists the commands and options)\n")
        raise SystemExit(2) from None
    if isinstance(command.subOptions, GarbageCollectOptions):
        garbageCollect(command.subOptions)
        return
    assert isinstance(command.subOptions, Options)
    serve(command.subOptions)


if __name__ == "__main__":
    main()
