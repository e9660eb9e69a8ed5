"""The `cove` command's first code: a Ctrl-C while cove is still loading ends it quietly (exit 130).

It lives outside the `cove` package on purpose: importing anything in `cove` runs the package's
imports first (the engine, the store, the server client), a few hundred milliseconds in which a
Ctrl-C would otherwise print a long traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from cove.cli.main import main as cove_main
    except KeyboardInterrupt:
        if "--debug" in sys.argv[1:]:
            raise
        sys.stderr.write("\naborted\n")
        sys.exit(130)
    cove_main()
