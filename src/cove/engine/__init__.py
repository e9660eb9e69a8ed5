"""The engine layer: turns a stored model plus a request into tokens."""
