"""Composing a campaign email as bytes, quickly and by the RFCs.

``email.message.EmailMessage`` took longer to build and serialise a message
than the SMTP transaction took to send it (bench/campaign.py); a campaign
message has a fixed shape (plain text, a handful of headers), so it is
written here directly: headers folded never (RFC 5322 allows 998
characters, and the ``List-Unsubscribe`` URL must stay one readable token),
non-ASCII header text as RFC 2047 words, the body as 7-bit text when it is
ASCII with short lines and as quoted-printable UTF-8 otherwise.
"""

from __future__ import annotations

import datetime as dt
from email import quoprimime
from email.header import Header
from email.utils import format_datetime, formataddr

MAX_LINE = 990


def _text(value: str) -> str:
    """Header text on one line; RFC 2047 when it is not plain ASCII."""
    value = " ".join(value.split())  # no CR/LF can reach the header block
    if value.isascii() and len(value) < MAX_LINE - 100:
        return value
    return Header(value, "utf-8").encode(maxlinelen=MAX_LINE)


def compose(*, sender: tuple[str, str], to: str, subject: str, message_id: str, date: dt.datetime,
            headers: dict[str, str], body: str) -> bytes:  # fmt: skip
    """The message as it goes after DATA (CRLF line ends; the dot-stuffing is smtplib's)."""
    lines = [
        f"From: {formataddr(sender)}",
        f"To: {to}",
        f"Subject: {_text(subject)}",
        f"Date: {format_datetime(date.replace(tzinfo=dt.UTC), usegmt=True)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    lines.extend(f"{name}: {_text(value)}" for name, value in headers.items())
    body_lines = body.replace("\r\n", "\n").split("\n")
    if body.isascii() and all(len(line) < MAX_LINE for line in body_lines):
        lines += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit", ""]
        lines += body_lines
    else:
        lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", ""]
        lines += quoprimime.body_encode(body.replace("\r\n", "\n"), eol="\n").split("\n")
    text = "\r\n".join(lines)
    return (text if text.endswith("\r\n") else text + "\r\n").encode("ascii")
