"""The servers and processes a run starts for itself: an SMTP sink that counts what it accepted,
a Valkey server that survives a restart, and child processes in process groups of their own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from ticketq.embedded import SmtpSink

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


def wait_for(check: Any, timeout: float, message: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(interval)


class Proc:
    """A child process in its own process group: stopping it stops everything it forked."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logfile: Path) -> None:
        self.name, self.args, self.env, self.logfile = name, args, env, logfile
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: bytes | None = None, timeout: float = 60) -> Proc:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        offset = self.logfile.stat().st_size if self.logfile.exists() else 0  # a restart appends
        with self.logfile.open("ab") as log:
            self.process = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        if ready is not None:
            def up() -> bool:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.logfile.read_text()[-3000:]}")
                return ready in self.logfile.read_bytes()[offset:]
            wait_for(up, timeout, f"{self.name} did not start; see {self.logfile}", 0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def tree_rss_kib(self) -> dict[int, int]:
        """Resident memory of the process and its children, from /proc."""
        sizes = {}
        for pid in [self.pid, *self.children()]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), None)
            if line:
                sizes[pid] = int(line.split()[1])
        return sizes

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.pid)
        os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # stragglers of our own group (prefork children)
        self.process.wait()


class Supervisor(threading.Thread):
    """Restarts a process of ours that exits on its own, as `restart: unless-stopped` does in
    docker-compose.yml (or systemd's Restart=always); keeps when and how each one ended."""

    def __init__(self, procs: list[Proc], ready: dict[str, bytes | None]) -> None:
        super().__init__(daemon=True)
        self.procs, self.ready = procs, ready
        self.restarts: list[tuple[float, str, int | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            for proc in self.procs:
                code = proc.process.poll() if proc.process is not None else None
                if code is not None and not self.halt.is_set():
                    self.restarts.append((time.time(), proc.name, code))
                    with contextlib.suppress(Exception):  # it will be retried on the next round
                        proc.start(self.ready.get(proc.name), timeout=60)

    def stop(self) -> list[tuple[float, str, int | None]]:
        self.halt.set()
        self.join(65)
        return self.restarts
