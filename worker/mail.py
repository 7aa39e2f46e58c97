"""Email messages (multipart/alternative + attachments) and SMTP from SMTP_URL with per-process connection reuse."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import encoders
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from models.base import utcnow

log = logging.getLogger("ticketq.mail")

SMTP_TIMEOUT = 15.0  # a job's hard time limit is 60 s: a hung server must not eat it
# A connection idle longer than this may have been closed by the server: NOOP before reusing it.
IDLE_CHECK_SECONDS = 30.0
WIRE_POLICY = compat32.clone(linesep="\r\n")


class DeliveryError(Exception):
    """An SMTP failure; `temporary` says whether trying again later may succeed, `unreachable`
    that the server itself did not answer (so the next message need not try either)."""

    def __init__(self, reply: str, *, temporary: bool, unreachable: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.temporary = temporary
        self.unreachable = unreachable


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


@dataclass(frozen=True)
class Mail:
    kind: str
    identifier: str
    sender: str
    recipient: str
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()
    message_id: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def clean_header(value: str) -> str:
    """One line, whatever the data: a name holding "\\r\\nBcc: x" must never become a header."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def checked_address(value: str) -> str:
    """A bare addr-spec; anything with line breaks or several addresses is refused (a permanent failure)."""
    if any(c in value for c in "\r\n,;<>") or value.count("@") != 1:
        raise DeliveryError(f"invalid recipient address {value[:80]!r}", temporary=False)
    try:
        return str(Address(addr_spec=value.strip()))
    except (ValueError, IndexError) as exc:
        raise DeliveryError(f"invalid recipient address {value[:80]!r}: {exc}", temporary=False) from None


def new_message_id(sender: str) -> str:
    domain = sender.rpartition("@")[2] or "localhost"
    return make_msgid(idstring="ticketq", domain=clean_header(domain))


def message_id_for(identifier: str, delivery_id: int, sender: str) -> str:
    """The Message-ID of one logical email: derived from its record, so every try carries the same
    one and a receiver can drop a repeat, even if the try that recorded it was lost."""
    domain = clean_header(sender.rpartition("@")[2] or "localhost")
    return f"<ticketq.{clean_header(identifier)}.{delivery_id}@{domain}>"


def _header(value: str) -> str | Header:
    value = clean_header(value)
    return value if value.isascii() else Header(value, "utf-8")


def build_message(mail: Mail) -> Message:
    """Text and HTML alternatives; with attachments the alternative part sits inside multipart/mixed.

    Built with the classic MIME classes: several times cheaper than EmailMessage's header registry,
    which counts when every confirmed order sends three of these.
    """
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(mail.text, "plain", "utf-8"))
    alternative.attach(MIMEText(mail.html, "html", "utf-8"))
    message = alternative
    if mail.attachments:
        message = MIMEMultipart("mixed")
        message.attach(alternative)
        for item in mail.attachments:
            part = MIMEBase(item.maintype, item.subtype)
            part.set_payload(item.content)
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=clean_header(item.filename))
            message.attach(part)
    message["From"] = checked_address(mail.sender)
    message["To"] = checked_address(mail.recipient)
    headers = {
        "Subject": mail.subject,
        "Date": format_datetime(utcnow()),
        "Message-ID": mail.message_id or new_message_id(mail.sender),
        "X-Order-Identifier": mail.identifier,
        "X-Email-Kind": mail.kind,
        **mail.extra_headers,
    }
    for name, value in headers.items():
        message[clean_header(name)] = _header(value)  # type: ignore[assignment]  # a Header is allowed here
    return message


def message_bytes(message: Message) -> bytes:
    """The message as SMTP wants it: CRLF line ends."""
    return message.as_bytes(policy=WIRE_POLICY)


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

    def send(self, message: Message) -> None:
        """Send or raise DeliveryError; a kept-alive connection the server dropped is retried once on a
        fresh one (a dropped connection fails at MAIL FROM, before any message was accepted)."""
        sender, recipient = str(message["From"]), str(message["To"])
        data = message_bytes(message)
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
