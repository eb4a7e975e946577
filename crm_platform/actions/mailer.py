"""Delivering email: over SMTP (``SMTP_URL``), or kept in the local mail outbox.

Sending exactly once needs a commit point. The SMTP server accepts a message
when it reads the end-of-data line; so the mailer sends the message up to
that line, lets the caller commit "handed over" to the database, and only
then sends the final ``.``. A crash before the commit leaves nothing
delivered (the server drops an unfinished message) and the action is
retried; after the commit the message is the server's. Only a crash in the
moment between the commit and that last write would lose a message, where
the usual order (send, then record) would send it twice.
"""

from __future__ import annotations

import re
import smtplib
import socket
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from urllib.parse import unquote, urlsplit


class MailRejected(Exception):
    """The SMTP server refused a message after it had been handed over."""


class KeepMailer:
    """No SMTP server configured: messages are only kept (the local mail outbox)."""

    delivers = False

    def send(self, message: EmailMessage, commit_point: Callable[[], None]) -> str:
        commit_point()
        return "kept in the local mail outbox (no SMTP_URL configured)"


class SMTPMailer:
    """Sends through one SMTP server, one connection per worker thread."""

    delivers = True

    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError(f"SMTP_URL must start with smtp://, smtps:// or smtp+starttls://, got {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> smtplib.SMTP:
        smtp = getattr(self._local, "smtp", None)
        if smtp is not None:
            try:
                if smtp.noop()[0] == 250:
                    return smtp
            except (smtplib.SMTPException, OSError):
                pass  # the server closed an idle connection: open a new one
        smtp = self.connect()
        self._local.smtp = smtp
        return smtp

    def connect(self) -> smtplib.SMTP:
        """A new connection to the server, encrypted and signed in as ``SMTP_URL`` says."""
        cls = smtplib.SMTP_SSL if self.scheme == "smtps" else smtplib.SMTP
        smtp = cls(self.host, self.port, timeout=self.timeout)
        # The message and its final line are two writes with the commit point between them;
        # with Nagle's algorithm the second would wait for the server's delayed ACK (~40 ms).
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.scheme == "smtp+starttls":
            smtp.starttls()
        if self.username:
            smtp.login(self.username, self.password or "")
        return smtp

    def send(self, message: EmailMessage, commit_point: Callable[[], None]) -> str:
        """Send ``message``; ``commit_point`` runs after the data and before its final line."""
        smtp = self._connection()
        try:
            return self._transaction(smtp, message, commit_point)
        except BaseException:
            self._local.smtp = None
            _close(smtp)
            raise

    def _transaction(self, smtp: smtplib.SMTP, message: EmailMessage, commit_point) -> str:
        sender = message["From"].addresses[0].addr_spec
        recipients = [a.addr_spec for header in ("To", "Cc") if message[header] for a in message[header].addresses]
        return transmit(smtp, sender, recipients, message.as_bytes(policy=SMTP), commit_point)


def transmit(smtp: smtplib.SMTP, sender: str, recipients: list[str], data: bytes, commit_point) -> str:
    """One SMTP transaction on ``smtp`` with the commit point before the final line.

    ``data`` is the whole message with CRLF line ends. Refusals before the commit
    point raise smtplib's errors (nothing was handed over, the connection is reset
    for the next message); a refusal of the finished message raises ``MailRejected``.
    """
    smtp.ehlo_or_helo_if_needed()
    code, reply = smtp.mail(sender)
    if code != 250:
        smtp.rset()
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    for recipient in recipients:
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            smtp.rset()
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = smtp.docmd("DATA")
    if code != 354:
        smtp.rset()
        raise smtplib.SMTPDataError(code, reply)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    smtp.send(data)
    try:
        commit_point()
    except BaseException:
        _close(smtp)  # the server never sees the end of data, so it delivers nothing
        raise
    smtp.send(b".\r\n")
    code, reply = smtp.getreply()
    text = f"{code} {reply.decode(errors='replace')}"
    if code != 250:
        raise MailRejected(text)
    return text


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.close()
    except OSError:
        pass


def make_mailer(url: str | None):
    """The mailer for ``SMTP_URL`` (none: keep messages in the local outbox)."""
    return SMTPMailer(url) if url else KeepMailer()
