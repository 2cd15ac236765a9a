"""
The C{txregistry} command: C{txregistry serve [CONFIG]}, as registry:2's
C{registry serve CONFIG}: in the foreground, logging to standard output,
until SIGINT or SIGTERM. C{twistd registry} runs the same service with
twistd's daemon options.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from txregistry import __version__
from txregistry.config import ConfigError
from txregistry.options import Options, configFromOptions


class Command(usage.Options):
    synopsis = "Usage: txregistry [options]"
    longdesc = (
        "A container registry (OCI distribution, Docker Registry HTTP API v2) on Twisted. "
        "twistd registry runs the same service with twistd's daemon options."
    )
    subCommands = [
        ["serve", None, Options, "Run the registry in the foreground, logging to standard output"],
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
            raise usage.UsageError("give a command: serve")


def serve(options: Options) -> None:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from txregistry.logging import lineObserver
    from txregistry.service import makeService

    try:
        config = configFromOptions(options)
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


def main(argv: list[str] | None = None) -> None:
    command = Command()
    try:
        command.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"txregistry: {e} (txregistry --help lists the commands and options)\n")
        raise SystemExit(2) from None
    assert isinstance(command.subOptions, Options)
    serve(command.subOptions)


if __name__ == "__main__":
    main()
