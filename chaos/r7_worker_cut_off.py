"""R7 a worker host cut off from the network: one worker runs in a network namespace of the script's
own and reaches Redis, PostgreSQL and SMTP only over a veth pair to a second namespace of its own,
where socat relays each connection on to the servers (through Unix sockets: no address is added
outside the two namespaces). While it holds jobs, its end of the link goes down for 90 s, then up.
Goals: 0 emails missing, 0 duplicates, the other worker has done the cut-off worker's jobs within
90 s of the cut (their leases run out, beat's relay sends them again), and nothing the cut-off worker
does when the link comes back sends an email twice.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from bench.harness import Harness
from bench.report import Row
from bench.servers import Restarter
from ticketq.processes import Process

# About 2 min of payments, so the link comes back while they go on; at a pace the other worker keeps
# up with alone, so the time to redo the cut-off worker's jobs measures their leases, not a backlog.
ORDERS, QUICK_ORDERS = 130, 110
RATE = 1.0  # payments/s
CUT = 90.0  # the cut; the leases it holds (75 s) run out within it
WAIT = 120.0
GOAL_SECONDS = 90.0


class Netns:
    """Two namespaces and a veth pair between them; the servers reached from `inner` through relays in `outer`."""

    def __init__(self, root: Any) -> None:
        tag = secrets.token_hex(3)
        self.outer, self.inner = f"tq-r7o-{tag}", f"tq-r7i-{tag}"
        self.link_outer, self.link_inner = f"tqo{tag}", f"tqi{tag}"
        net = secrets.randbelow(250) + 1
        self.outer_addr, self.inner_addr = f"10.213.{net}.1", f"10.213.{net}.2"
        self.sockets = root / "r7-sockets"
        self.relays: list[subprocess.Popen[bytes]] = []

    def up(self) -> Netns:
        self.sockets.mkdir(parents=True, exist_ok=True)
        for ns in (self.outer, self.inner):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.outer, "link", "add", self.link_outer, "type", "veth", "peer", "name", self.link_inner,
            "netns", self.inner)
        _ip("-n", self.outer, "addr", "add", f"{self.outer_addr}/30", "dev", self.link_outer)
        _ip("-n", self.inner, "addr", "add", f"{self.inner_addr}/30", "dev", self.link_inner)
        _ip("-n", self.inner, "link", "set", self.link_inner, "up")
        self.set_link(True)
        return self

    def relay(self, name: str, port: int) -> int:
        """Serve 127.0.0.1:`port` of this host at outer_addr:`port` (a Unix socket between the two socats)."""
        path = self.sockets / f"{name}.sock"
        self.relays.append(subprocess.Popen(["socat", f"UNIX-LISTEN:{path},fork,unlink-early",
                                             f"TCP:127.0.0.1:{port}"], stderr=subprocess.DEVNULL))
        # The relay stands in for the servers' TCP stack facing the worker, so it keeps the keepalive
        # settings the workers ask of PostgreSQL (models/db.py): a dead peer is noticed in ~25 s.
        self.relays.append(subprocess.Popen(["ip", "netns", "exec", self.outer, "socat",
                                             f"TCP-LISTEN:{port},bind={self.outer_addr},fork,reuseaddr,"
                                             "keepalive,keepidle=10,keepintvl=5,keepcnt=3",
                                             f"UNIX-CONNECT:{path}"], stderr=subprocess.DEVNULL))
        return port

    def set_link(self, up: bool) -> None:
        """The far end of the cable: the worker's host keeps its address and routes, its packets go
        nowhere (a partition, not a refused connection)."""
        _ip("-n", self.outer, "link", "set", self.link_outer, "up" if up else "down")

    def down(self) -> None:
        for relay in self.relays:
            relay.terminate()
        for relay in self.relays:
            try:
                relay.wait(5)
            except subprocess.TimeoutExpired:
                relay.kill()
        for ns in (self.inner, self.outer):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(self.sockets, ignore_errors=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def missing_tools() -> str:
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    absent = [tool for tool in ("ip", "socat") if shutil.which(tool) is None]
    return f"needs {' and '.join(absent)}" if absent else ""


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    if why := missing_tools():
        return [Row("R7", "run", f"skipped: {why}", "", False)], []
    h.reset()
    net = Netns(h.root).up()
    try:
        return cut_under_load(h, net, quick)
    finally:
        net.down()


def cut_under_load(h: Harness, net: Netns, quick: bool) -> tuple[list[Row], list[str]]:
    from sqlalchemy.engine import make_url

    from bench.workload import factory, make_pending, seed_event, wait_for_emails
    from chaos.tally import tally

    assert h.redis is not None and h.sink is not None
    db = factory(h.database_url)
    seed = seed_event(db)
    orders = make_pending(db, seed, QUICK_ORDERS if quick else ORDERS)
    pg = make_url(h.database_url)
    inner_env = {
        "REDIS_URL": f"redis://{net.outer_addr}:{net.relay('redis', h.redis.port)}/0",
        "DATABASE_URL": pg.set(host=net.outer_addr, port=net.relay("postgres", pg.port or 5432))
        .render_as_string(hide_password=False),
        "SMTP_URL": f"smtp://{net.outer_addr}:{net.relay('smtp', h.sink.port)}",
        "LOG_LEVEL": "INFO",
    }
    args = ["ip", "netns", "exec", net.inner, sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info",
            "-Q", "orders,documents,mail", "-c", "2", "-n", f"r7-cut-{secrets.token_hex(3)}@%h", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]
    cut_off = h.spawn("r7-cut-off-worker", args, b" ready.", inner_env)
    other, beat = h.worker("r7-worker", concurrency=2), h.beat("r7-beat")
    supervisor = Restarter([other, beat])
    supervisor.start()
    paid: dict[str, float] = {}
    halt = threading.Event()
    feeder = threading.Thread(target=_feed, args=(db, orders, paid, halt), daemon=True)
    started = time.time()
    try:
        feeder.start()
        held = _wait_holding(db, cut_off, 60)
        net.set_link(False)
        cut_at = time.time()
        time.sleep(CUT)
        net.set_link(True)
        back_at = time.time()
        feeder.join()
        accepted = wait_for_emails(h.sink.snapshot, list(paid), WAIT)
        done_at = _done_times(db, [job for job, _ in held])
        alive = {p.name: p.poll() is None for p in (cut_off, other, beat)}
        restarts = supervisor.stop()
    finally:
        halt.set()
        supervisor.halt.set()
        for proc in (cut_off, other, beat):
            h.stop(proc)
    got = tally(h.database_url, accepted, paid)
    missing = sum(max(0, 3 - n) for n in _kinds_per_order(got, paid).values())
    took = max((t - cut_at for t in done_at.values() if t is not None), default=float("nan"))
    undone = sum(1 for t in done_at.values() if t is None)
    after = _log_after(cut_off, back_at)
    sent_after = sum(1 for line in after if " sent to " in line)
    said = {k: sum(1 for line in after if k in line) for k in ("not run", "stopped", "failed", "given back")}
    rows = [
        Row("R7", f"emails missing ({len(paid)} orders paid, {3 * len(paid)} emails expected)", str(missing), "0",
            missing == 0),
        Row("R7", f"duplicates (by order+kind+recipient+batch; {got.repeated_message_ids} repeats of a Message-ID)",
            str(got.duplicates), "0", got.duplicates == 0),
        Row("R7", f"seconds from the cut until the other worker had done the {len(held)} jobs the cut-off worker held",
            f"{took:.1f} s" if not undone else f"{undone} never done", f"<= {GOAL_SECONDS:.0f} s",
            not undone and bool(held) and took <= GOAL_SECONDS),
        Row("R7", "the cut-off worker once the link came back: its runs stopped by their fence (LeaseLost); "
            "emails it sent (new work)", f"{said['stopped']} stopped; {sent_after} sent", "nothing sent twice",
            got.duplicates == 0),
        Row("R7", "processes alive at the end (cut-off worker, worker, beat); exits restarted by the script",
            f"{sum(alive.values())}/{len(alive)}; {len(restarts)}", f"{len(alive)}/{len(alive)}; 0",
            all(alive.values()) and not restarts),
    ]
    notes = [f"R7: a worker `-c 2` in a network namespace of its own reaches Redis, PostgreSQL and the SMTP sink "
             "through a veth pair to a second namespace where socat relays on to the servers (no address outside "
             f"the two namespaces); {RATE:g} payments/s; beat and a second worker run on the host. Its link went "
             f"down {cut_at - started:.0f} s into the run, while it held jobs {[j for j, _ in held]}, for "
             f"{back_at - cut_at:.0f} s. After the link came back its log said: "
             + ", ".join(f"'{k}' x{n}" for k, n in said.items()) + "."]
    return rows, notes


def _feed(db: Any, orders: list[str], paid: dict[str, float], halt: threading.Event) -> None:
    """Complete the orders at RATE, as the API does (commit, then publish the job)."""
    from bench.workload import complete

    began = time.time()
    for n, identifier in enumerate(orders):
        if halt.wait(max(0.0, began + n / RATE - time.time())):
            return
        paid[identifier] = complete(db, identifier)


def _wait_holding(db: Any, worker: Process, timeout: float) -> list[tuple[int, str]]:
    """Until a child of `worker` holds a job's lease: the jobs it holds (id, holder)."""
    import sqlalchemy as sa

    from models.outbox import OutboxJob

    deadline = time.time() + timeout
    while True:
        holders = {f"{socket.gethostname()}:{pid}" for pid in worker.children()}
        with db() as session:
            rows = [(int(i), str(c)) for i, c in session.execute(sa.select(OutboxJob.id, OutboxJob.claimed_by).where(
                OutboxJob.done_at.is_(None), OutboxJob.claimed_by.in_(holders)))] if holders else []
        if rows or time.time() > deadline:
            return rows
        time.sleep(0.05)


def _done_times(db: Any, jobs: list[int]) -> dict[int, float | None]:
    import sqlalchemy as sa

    from models.outbox import OutboxJob

    with db() as session:
        rows = dict(session.execute(sa.select(OutboxJob.id, OutboxJob.done_at).where(OutboxJob.id.in_(jobs))).all())
    return {j: (rows[j].timestamp() if rows.get(j) else None) for j in jobs}


def _kinds_per_order(got: Any, paid: dict[str, float]) -> dict[str, int]:
    kinds: dict[str, set[str]] = {o: set() for o in paid}
    for order, kind, _, _ in got.copies:
        if order in kinds:
            kinds[order].add(kind)
    return {o: len(k) for o, k in kinds.items()}


def _log_after(proc: Process, moment: float) -> list[str]:
    """The worker's log lines stamped after `moment` (Celery's UTC timestamps)."""
    text = proc.log.read_text(errors="replace") if proc.log and proc.log.exists() else ""
    found = []
    for line in text.splitlines():
        match = re.match(r"\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d{3})", line)
        if match:
            at = dt.datetime.strptime(match.group(1).replace(".", ","), "%Y-%m-%d %H:%M:%S,%f")
            if at.replace(tzinfo=dt.UTC).timestamp() >= moment:
                found.append(line)
    return found

