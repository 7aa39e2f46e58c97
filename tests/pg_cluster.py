"""A PostgreSQL cluster of a test's (or chaos script's) own, which it may crash and start again: Debian's
server binaries (`make postgres-deps` installs them), initdb and pg_ctl run as the `postgres` user
when we are root (the server refuses to run as root), on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ticketq.embedded import free_port

SERVER_USER = "postgres"


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, if any."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    numbers = {p: int(m.group(0)) if (m := re.search(r"\d+", p.parent.name)) else 0 for p in found}
    return max(found, key=lambda p: numbers[p]) if found else None


@dataclass
class PgCluster:
    """initdb on start; `crash()` is `pg_ctl stop -m immediate` (what an OOM kill or a host loss looks
    like to clients), `start()` brings it back on the same port with its data."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ticketq-pg-")))
    port: int = field(default_factory=free_port)
    bindir: Path | None = field(default_factory=server_binaries)
    crashes: list[tuple[float, float]] = field(default_factory=list)  # (down at, up at), time.time()

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PgCluster:
        if self.bindir is None:
            raise RuntimeError("PostgreSQL's server binaries are missing: run `make postgres-deps` "
                               "(apt-get install postgresql) as root")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\nmax_connections = 100\n")
        return self.start()

    def start(self) -> PgCluster:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        if self.crashes and not self.crashes[-1][1]:
            self.crashes[-1] = (self.crashes[-1][0], time.time())
        return self

    def crash(self) -> float:
        """Stop the server without a shutdown checkpoint; returns when it is gone."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        down = time.time()
        self.crashes.append((down, 0.0))
        return down

    def create_database(self, name: str) -> str:
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                  "-qc", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._as_server_user("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                           capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _as_server_user(self, program: str, *args: str) -> list[str]:
        assert self.bindir is not None
        command = [str(self.bindir / program), *args]
        return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(self._as_server_user(program, *args), capture_output=True, text=True, check=False,
                              cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}\n{self.log_tail()}")
