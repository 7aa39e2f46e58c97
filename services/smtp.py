"""Talking SMTP: SMTP_URL parsed, one connection per process kept open, replies classified."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from opentelemetry.util.types import AttributeValue

from core.metrics import smtp_outcome
from core.tracing import span

log = logging.getLogger("ticketq.smtp")

SMTP_TIMEOUT = 15.0  # a job's hard time limit is 60 s: a hung server must not eat it

# A connection idle longer than this may have been closed by the server: NOOP before reusing it.
IDLE_CHECK_SECONDS = 30.0


class DeliveryError(Exception):
    """An SMTP failure; `temporary` says whether trying again later may succeed, `unreachable`
    that the server itself did not answer (so the next message need not try either)."""

    def __init__(self, reply: str, *, temporary: bool, unreachable: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.temporary = temporary
        self.unreachable = unreachable

    @property
    def outcome(self) -> str:
        """Its class in the metrics: unreachable, temporary or permanent."""
        return "unreachable" if self.unreachable else "temporary" if self.temporary else "permanent"


@dataclass(frozen=True)
class Outgoing:
    """A message in its wire form (CRLF line ends), with the envelope SMTP needs (services/messages.py)."""

    sender: str
    recipient: str
    data: bytes


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    ssl: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpConfig:
    """smtp://user:pass@host:port, smtps://… (TLS from the start), ?starttls=true (upgrade after EHLO)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"SMTP_URL scheme {parts.scheme!r} is not supported: use smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("SMTP_URL has no host: smtp://user:pass@host:port")
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["false"])[-1].lower() in ("1", "true", "yes", "on")
    secure = parts.scheme == "smtps"
    return SmtpConfig(
        host=parts.hostname,
        port=parts.port or (465 if secure else 587 if starttls else 25),
        ssl=secure,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def classify(exc: BaseException) -> DeliveryError:
    """4xx, refused connections, timeouts and dropped connections are temporary; 5xx are permanent."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        code = min(code for code, _ in replies) if replies else 450
        text = "; ".join(f"{c} {m.decode(errors='replace') if isinstance(m, bytes) else m}" for c, m in replies)
        return DeliveryError(text or str(exc), temporary=400 <= code < 500)
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        # 421 is the server closing the channel; a refused greeting is no answer either.
        closing = exc.smtp_code == 421 or isinstance(exc, smtplib.SMTPConnectError)
        return DeliveryError(f"{exc.smtp_code} {message}", temporary=not 500 <= exc.smtp_code < 600,
                             unreachable=closing)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"SMTP server does not support a required extension: {exc}", temporary=False)
    if isinstance(exc, smtplib.SMTPException) and not isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(f"{type(exc).__name__}: {exc}", temporary=True)
    if isinstance(exc, OSError):  # refused, timed out, dropped (SMTPServerDisconnected too)
        return DeliveryError(f"{type(exc).__name__}: {exc}", temporary=True, unreachable=True)
    raise exc


class SmtpClient:
    """One SMTP connection kept open between messages; reopened once when the server dropped it."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None
        self.last_used = 0.0
        self.lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        conn: smtplib.SMTP
        if c.ssl:
            conn = smtplib.SMTP_SSL(c.host, c.port, timeout=SMTP_TIMEOUT, context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(c.host, c.port, timeout=SMTP_TIMEOUT)
        try:
            conn.ehlo()
            if c.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if c.username:
                conn.login(c.username, c.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None

    def send(self, message: Outgoing, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        """Send or raise DeliveryError, counting the outcome per server (README "Metrics"), in a span
        with the caller's `attributes` (which order, which email; never an address)."""
        server = f"{self.config.host}:{self.config.port}"
        where: dict[str, AttributeValue] = {"server.address": self.config.host, "server.port": self.config.port}
        with span("smtp send", {**where, **(attributes or {})}) as traced:
            try:
                self._send(message)
            except DeliveryError as exc:
                smtp_outcome(exc.outcome, server)
                traced.set_attribute("ticketq.smtp.outcome", exc.outcome)
                raise
            smtp_outcome("sent", server)
            traced.set_attribute("ticketq.smtp.outcome", "sent")

    def _send(self, message: Outgoing) -> None:
        """A kept-alive connection the server dropped is retried once on a fresh one (a dropped
        connection fails at MAIL FROM, before any message was accepted)."""
        sender, recipient, data = message.sender, message.recipient, message.data
        with self.lock:
            for attempt in (1, 2):
                reused = self._usable_connection()
                try:
                    if self.connection is None:
                        self.connection = self._connect()
                    self.connection.sendmail(sender, [recipient], data)
                    self.last_used = time.monotonic()
                    return
                except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    self.drop()
                    if not (reused and attempt == 1):
                        raise classify(exc) from exc
                except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
                    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
                        self.drop()
                    raise classify(exc) from exc
                except (OSError, smtplib.SMTPException) as exc:
                    self.drop()
                    raise classify(exc) from exc

    def _usable_connection(self) -> bool:
        """Whether a kept connection is there; one idle for long is checked with NOOP first."""
        if self.connection is None:
            return False
        if time.monotonic() - self.last_used > IDLE_CHECK_SECONDS:
            try:
                if self.connection.noop()[0] == 250:
                    return True
            except (smtplib.SMTPException, OSError):
                pass
            self.drop()
            return False
        return True

    def drop(self) -> None:
        """Forget the connection without a goodbye (it may be the thing that hangs)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None


_clients: dict[str, SmtpClient] = {}

_clients_lock = threading.Lock()


def smtp_client(url: str) -> SmtpClient:
    """The process's client for this URL (Celery prefork: one per child process)."""
    with _clients_lock:
        if url not in _clients:
            _clients[url] = SmtpClient(parse_smtp_url(url))
        return _clients[url]


def close_clients() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
