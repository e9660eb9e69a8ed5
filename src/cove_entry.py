"""The `cove` command's first code: a Ctrl-C while cove is still loading ends it quietly (exit 130).

It lives outside the `cove` package on purpose: importing anything in `cove` runs the package's
imports first (the engine, the store, the server client), a few hundred milliseconds in which a
Ctrl-C would otherwise print a long traceback.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupt_again(unraisable: sys.UnraisableHookArgs) -> None:
    """A Ctrl-C that lands in one of the import system's own callbacks is "ignored": printed as a
    traceback and dropped. Send it again, so it ends the command as any Ctrl-C does."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt) and "--debug" not in sys.argv[1:]:
        os.kill(os.getpid(), signal.SIGINT)
        return
    sys.__unraisablehook__(unraisable)


def main() -> None:
    sys.unraisablehook = _interrupt_again
    try:
        from cove.cli.main import main as cove_main
    except (KeyboardInterrupt, RuntimeError) as exc:
        # Python 3.11 wraps a Ctrl-C that lands while a class is being made (a dataclass field's
        # __set_name__) in a RuntimeError: it is still the Ctrl-C.
        if not isinstance(exc, KeyboardInterrupt) and not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
        if "--debug" in sys.argv[1:]:
            raise
        sys.stderr.write("\naborted\n")
        sys.exit(130)
    cove_main()
