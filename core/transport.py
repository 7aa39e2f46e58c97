"""kombu's Redis transports, with one fix: a worker that loses Redis while it holds a job no longer dies.

Celery 5.7, on losing an established broker connection, first `collect()`s the connection (which
drops its transport's reference to it) and then `close()`s it; closing the default channel then
restores the unacknowledged job, which needs the connection parameters, and reading them from the
dropped reference raises AttributeError ("'NoneType' object has no attribute 'hostname'"). Only
connection errors are ignored there, so the worker stopped with "Unrecoverable error" (chaos R2,
3 runs in 4 with a job in flight). Here that case is a connection error, which Celery ignores: the
job stays in Redis's unacked set (and in PostgreSQL), the worker reconnects.

`register()` makes these the transports of the redis://, rediss:// and sentinel:// schemes for every
kombu connection of the process (worker, beat, producer, Flower), so URLs and logs read as usual.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class _ClosedConnectionIsAConnectionError:
    connection: Any

    def _connparams(self, asynchronous: bool = False) -> Any:
        if getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("the broker connection was already collected while its channel closed")
        return super()._connparams(asynchronous)  # type: ignore[misc]


class Channel(_ClosedConnectionIsAConnectionError, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_ClosedConnectionIsAConnectionError, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def register() -> None:
    TRANSPORT_ALIASES.update({
        "redis": f"{__name__}:Transport", "rediss": f"{__name__}:Transport",
        "sentinel": f"{__name__}:SentinelTransport",
    })
