"""What a run watches for itself: an SMTP sink that counts what it accepted, and a restarter for the
processes it started (ticketq.processes)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from ticketq.embedded import SmtpSink
from ticketq.processes import Backoff, Process

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Accepted:
    """One message the sink accepted: when, and the headers we count by."""

    at: float
    message_id: str
    order: str
    kind: str
    recipients: tuple[str, ...]


class CountingSink(SmtpSink):
    """The aiosmtpd sink, keeping only headers and acceptance times (bodies carry PDFs: 5,000 orders
    would hold gigabytes), and able to go down and come back on the same port."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port=port)
        self.accepted: list[Accepted] = []
        self.rcpt_attempts: dict[str, int] = {}
        self.data_attempts = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self._lock:
            self.rcpt_attempts[address.lower()] = self.rcpt_attempts.get(address.lower(), 0) + 1
        return str(await super().handle_RCPT(server, session, envelope, address, options))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.data_attempts += 1
            if self.replies:
                return self.replies.popleft()
        # Only the header block: parsing the whole content walks every line of the PDFs (0.3 ms of an
        # 80 kB message) before the 250, and that time is the window in which a client's death after its
        # final dot means a duplicate (RFC 1047), so a slow sink would inflate chaos' duplicate counts.
        content = envelope.content
        end = content.find(b"\r\n\r\n")
        headers = BytesHeaderParser(policy=policy.default).parsebytes(content[:end + 4] if end >= 0 else content)
        record = Accepted(time.time(), str(headers.get("Message-ID", "")), str(headers.get("X-Order-Identifier", "")),
                          str(headers.get("X-Email-Kind", "")), tuple(envelope.rcpt_tos))
        with self._lock:
            self.accepted.append(record)
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[Accepted]:
        with self._lock:
            return list(self.accepted)

    def clear(self) -> None:
        with self._lock:
            self.accepted.clear()
            self.rcpt_attempts.clear()
            self.data_attempts = 0
            self.replies.clear()
            self.refuse.clear()

    def go_down(self) -> None:
        self.controller.stop()

    def come_back(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()


class Restarter(threading.Thread):
    """Restarts a process of ours that exits on its own, as `restart: unless-stopped` does in
    docker-compose.yml (or systemd's Restart=always); keeps when and how each one ended."""

    def __init__(self, procs: list[Process]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.halt = threading.Event()
        for proc in procs:
            proc.restart = Backoff(give_up=None)

    def run(self) -> None:
        while not self.halt.wait(0.5):
            for proc in self.procs:
                with contextlib.suppress(Exception):  # it will be retried on the next round
                    proc.tend()

    def stop(self) -> list[tuple[float, str, int | None]]:
        """Stop watching; (time.time(), name, status) of every exit seen."""
        self.halt.set()
        self.join(65)
        return sorted((at, proc.name, code) for proc in self.procs for at, code in proc.exits)
