"""The one conversation service: every chat turn, from any door, happens here."""
