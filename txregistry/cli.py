"""
The C{txregistry} command: C{txregistry serve [CONFIG]}, as registry:2's
C{registry serve CONFIG}: in the foreground, logging to standard output,
until SIGINT or SIGTERM. C{twistd registry} runs the same service with
twistd's daemon options.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from txregistry.config import ConfigError
from txregistry.options import Options

USAGE = "usage: txregistry serve [--listen ENDPOINT]... [--root DIR] [CONFIG]\n"


def serve(options: Options) -> None:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from txregistry.service import makeService

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    try:
        service = makeService(options.registryConfig)
    except ConfigError as e:
        raise SystemExit(f"txregistry: {e}") from None
    # Ports are bound here, before the reactor runs: one in use ends start-up.
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return
    if args[:1] != ["serve"]:
        sys.stderr.write(USAGE)
        raise SystemExit(2)
    options = Options()
    try:
        options.parseOptions(args[1:])
    except usage.UsageError as e:
        sys.stderr.write(f"txregistry: {e}\n")
        raise SystemExit(2) from None
    serve(options)


if __name__ == "__main__":
    main()
