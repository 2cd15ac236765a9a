"""
The C{txregistry} command: C{txregistry serve [CONFIG]}, as registry:2's
C{registry serve CONFIG}.
"""

from __future__ import annotations

import sys

from twisted.scripts.twistd import run


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("serve", "-h", "--help"):
        sys.stderr.write("usage: txregistry serve [--listen ENDPOINT] [--root DIR] [CONFIG]\n")
        raise SystemExit(2)
    if args[0] != "serve":
        sys.stdout.write("usage: txregistry serve [--listen ENDPOINT] [--root DIR] [CONFIG]\n")
        return
    # twistd does the rest: logging to stdout, signals, the reactor.
    sys.argv = ["txregistry", "--nodaemon", "--pidfile=", "registry", *args[1:]]
    run()


if __name__ == "__main__":
    main()
