"""kombu's Redis transports, with two fixes: a worker that loses Redis while it holds a job no longer dies.

On losing the broker, Celery's worker `collect()`s the connection (dropping its transport's reference
to it) and then `close()`s it, ignoring only connection errors. When the default channel was not
closed during the collect (a BRPOP in flight, another channel's close failing first), that close
restores the unacknowledged job, which reads the connection parameters from the dropped reference:
AttributeError "'NoneType' object has no attribute 'hostname'", and the worker stops with
"Unrecoverable error". Here a channel whose connection was collected closes without restoring
(kombu's documented `do_restore` flag): the job stays in Redis's unacked set, the worker reconnects.

The same dropped reference stops an acknowledgement: a job that finishes after the worker reconnected
acknowledges on the channel it came from, whose connection is gone, and kombu raised AttributeError
("'NoneType' object has no attribute 'client'") out of the event loop: "Unrecoverable error" again
(chaos R2, about one run in eight). Such a channel now refuses the ack or reject with a connection
error, which Celery logs ("Couldn't ack") and goes on; the job's own record in PostgreSQL already
says it is done, so Redis handing the message out again runs nothing twice.

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

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        self._still_connected("acknowledge", delivery_tag)
        super().basic_ack(delivery_tag, multiple)  # type: ignore[misc]

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self._still_connected("reject", delivery_tag)
        super().basic_reject(delivery_tag, requeue)  # type: ignore[misc]

    def _still_connected(self, what: str, delivery_tag: Any) -> None:
        if self.connection is None:
            # One of the transport's connection errors (OSError): Celery logs it and the loop goes on.
            raise ConnectionError(f"cannot {what} message {delivery_tag}: its channel's broker connection is gone")

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
