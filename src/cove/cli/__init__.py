"""The `cove` command: a thin shell over the library (or a running server)."""
