"""The `cove` command: a thin shell over the library (or a running server)."""

from . import chat, history, main, settings  # noqa: F401 - each registers its commands on `main.cli`
