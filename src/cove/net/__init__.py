"""Network egress: the one gate every outbound connection asks (gate), its ledger (ledger), the
policy it applies (policy), and the audit-hook backstop for what bypasses it (audit)."""

from __future__ import annotations

from .gate import EgressRefused, Permit, allow, async_client, client, current, install

__all__ = ["EgressRefused", "Permit", "allow", "async_client", "client", "current", "install"]
