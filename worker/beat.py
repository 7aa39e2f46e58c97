"""Beat's scheduler: celery-redbeat (schedule and lock in Redis, so one of several beats schedules),
kept alive through a Redis outage and able to stand by again after losing its lock.

redbeat as shipped takes the lock once, at start (a standby blocks there, inside a signal handler, until
the lock is free), and extends it on every tick. A tick during a Redis outage raises and beat exits; a
beat whose lock expired while it was stalled raises on the next extend and exits too; and a standby that
takes over after Redis came back empty finds no schedule in Redis and would schedule nothing. This
subclass instead tries for the lock on every tick (so a standby ticks, answers `celery inspect ping`
and stops on SIGTERM like the active one), waits out an outage, stands by when the lock is someone
else's, and rewrites the schedule (declared in celeryconfig.py) into Redis each time it becomes active.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis
from redis.exceptions import LockError, LockNotOwnedError

from core.redis_urls import display

log = logging.getLogger("celery.beat")

OUTAGE_RETRY_SECONDS = 2.0


class StandbyScheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat is untyped
    """Schedules only while it holds the lock; otherwise polls for it every max_interval."""

    _active = False
    lock: Any = None
    lock_key: Any = None

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        # redbeat's beat_init handler blocks on the lock when lock_key is set; ours is taken in tick().
        self.standby_lock_key, self.lock_key = self.lock_key, None

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if not self._hold_lock():
                return float(self.max_interval)
            remaining = []
            for entry in self.schedule.values():
                next_time_to_run = self.maybe_due(entry, **self._maybe_due_kwargs)
                if next_time_to_run:
                    remaining.append(next_time_to_run)
            return float(min([*remaining, self.max_interval]))
        except LockError:
            raise
        except (redis.RedisError, OSError) as exc:
            log.warning("beat: Redis unavailable (%s); trying again in %.0fs", exc, OUTAGE_RETRY_SECONDS)
            return OUTAGE_RETRY_SECONDS

    def _hold_lock(self) -> bool:
        """Extend our lock, or try once to take it; True while this beat is the one that schedules."""
        if self.lock is not None and self.lock.local.token is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
                if not self._active:
                    self._become_active()
                return True
            except LockNotOwnedError:
                log.warning("beat: lost the lock %s (it expired while this beat or Redis stalled); "
                            "standing by", self.standby_lock_key)
                self.lock.local.token = None
                self._active = False
        if self.lock is None:
            self.lock = self._new_lock()
        if not self.lock.acquire(blocking=False):
            return False
        log.info("beat: Acquired lock")
        self._become_active()
        return True

    def _new_lock(self) -> Any:
        client = get_redis(self.app)
        lock = client.lock(self.standby_lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # as redbeat does: extend *to* the timeout
        return lock

    def _become_active(self) -> None:
        """The schedule may be missing from Redis (it came back empty): write it again, keeping last runs."""
        self.setup_schedule()
        self._active = True
        log.info("beat: this beat now schedules (lock %s, %ss)", self.standby_lock_key, self.lock_timeout)

    @property
    def info(self) -> str:
        return f"       . redis -> {display(self.app.redbeat_conf.redis_url)}\n" \
               f"       . lock -> `{self.standby_lock_key}` {self.lock_timeout}s (standby until it is free)"

    def close(self) -> None:
        try:
            super().close()
        except (redis.RedisError, OSError, LockError) as exc:  # Redis is down: the lock expires on its own
            log.warning("beat: could not release the lock: %s", exc)
            self.lock = None
