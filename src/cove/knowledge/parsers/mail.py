"""E-mail (stdlib email): a message's subject and sender are its heading, its text/plain body is
preferred and an HTML-only body is converted; attachments are named, not read. An mbox file is
its messages in order, each a section under its own subject."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

from ..documents import ParsedDocument
from ..errors import DocumentRefused
from . import limits
from .build import DocumentBuilder
from .html import html_sections
from .limits import Deadline

_FROM_LINE = re.compile(rb"^From \S+ [^\r\n]*\r?\n", re.M)


def _body(message: EmailMessage, deadline: Deadline) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload or "")
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        _, sections = html_sections(content, deadline)
        return "\n\n".join(text for _, text in sections)
    return content


def _attachments(message: EmailMessage) -> list[str]:
    return [part.get_filename() or part.get_content_type() for part in message.iter_attachments()]


def _add_message(builder: DocumentBuilder, message: EmailMessage, deadline: Deadline) -> str:
    subject = " ".join(str(message.get("subject", "") or "").split()) or "(no subject)"
    sender = " ".join(str(message.get("from", "") or "").split())
    date = str(message.get("date", "") or "")
    header = "\n".join(
        line
        for line in (
            f"Subject: {subject}",
            f"From: {sender}" if sender else "",
            f"Date: {date}" if date else "",
        )
        if line
    )
    body = _body(message, deadline)
    attachments = _attachments(message)
    note = f"Attachments (not indexed): {', '.join(attachments)}" if attachments else ""
    builder.add(
        "\n\n".join(p for p in (header, body.strip(), note) if p),
        heading=(f"{subject} — {sender}" if sender else subject,),
    )
    return subject


def _message(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage):  # the default policy always makes one
        raise DocumentRefused("is not an e-mail message")
    return message


def parse_eml(data: bytes, deadline: Deadline) -> ParsedDocument:
    builder = DocumentBuilder()
    subject = _add_message(builder, _message(data), deadline)
    return builder.document(title=subject)


def parse_mbox(data: bytes, deadline: Deadline) -> ParsedDocument:
    """Messages split at mbox 'From ' lines (mboxrd's '>From ' quoting undone in bodies)."""
    # a message starts at a 'From ' line at the start of the file or after a blank line, so an
    # unquoted 'From ' inside a body (older writers left them) is not taken for a new message
    starts = [
        m.start()
        for m in _FROM_LINE.finditer(data)
        if m.start() == 0 or data.endswith((b"\n\n", b"\n\r\n"), 0, m.start())
    ]
    if not starts:
        raise DocumentRefused("is not an mbox file (no 'From ' line starts a message)")
    if len(starts) > limits.MAX_MESSAGES:
        raise DocumentRefused(
            f"holds {len(starts):,} messages; cove indexes mbox files of up to {limits.MAX_MESSAGES:,}"
        )
    builder = DocumentBuilder()
    for begin, end in zip(starts, [*starts[1:], len(data)], strict=True):
        deadline.check()
        raw = data[begin:end]
        raw = raw[raw.index(b"\n") + 1 :]
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)
        _add_message(builder, _message(raw), deadline)
    return builder.document()
