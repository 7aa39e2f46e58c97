"""kombu's Redis transports, with one fix: a worker that loses Redis while it holds a job no longer dies.

On losing the broker, Celery's worker `collect()`s the connection (dropping its transport's reference
to it) and then `close()`s it, ignoring only connection errors. When the default channel was not
closed during the collect (a BRPOP in flight, another channel's close failing first), that close
restores the unacknowledged job, which reads the connection parameters from the dropped reference:
AttributeError "'NoneType' object has no attribute 'hostname'", and the worker stops with
"Unrecoverable error". Here a channel whose connection was collected closes without restoring
(kombu's documented `do_restore` flag): the job stays in Redis's unacked set, the worker reconnects.

`register()` makes these the transports of the redis://, rediss:// and sentinel:// schemes for every
kombu connection of the process (worker, beat, producer, Flower), so URLs and logs read as usual.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class _NoRestoreOnceCollected:
    connection: Any
    do_restore: bool

    def close(self) -> None:
        if self.connection is not None and self.connection.client is None:
            # Collected: no parameters to reach Redis with. The job stays in the unacked set, which
            # Redis's visibility timeout (and the job's lease in PostgreSQL) gives back.
            self.do_restore = False
        super().close()  # type: ignore[misc]


class Channel(_NoRestoreOnceCollected, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_NoRestoreOnceCollected, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def register() -> None:
    TRANSPORT_ALIASES.update({
        "redis": f"{__name__}:Transport", "rediss": f"{__name__}:Transport",
        "sentinel": f"{__name__}:SentinelTransport",
    })
