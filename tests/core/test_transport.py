"""The Redis transport's channels after their connection was dropped (core/transport.py), on the run's Redis."""

from __future__ import annotations

import pytest

from tests.backends import Backends


@pytest.mark.parametrize("settle", ["basic_ack", "basic_reject"])
def test_a_message_settled_on_a_channel_whose_connection_is_gone_is_a_connection_error(
        backends: Backends, settle: str) -> None:
    """What a job finishing after the worker reconnected does (chaos R2): Celery logs a connection
    error and goes on, where kombu's AttributeError ended the worker ("Unrecoverable error")."""
    from kombu import Connection

    from core.transport import Channel, Transport

    # The class itself: kombu caches a scheme's transport per process, and another test of this
    # process may have resolved redis:// before anything registered ours.
    with Connection(backends.redis_url, transport=Transport) as connection:
        channel = connection.channel()
        assert isinstance(channel, Channel)
        channel.close()  # what the worker's reconnect does to the channel a job came from
        assert channel.connection is None
        with pytest.raises(ConnectionError) as raised:
            getattr(channel, settle)(1)
        assert isinstance(raised.value, connection.connection_errors)  # logged by Celery, not fatal


def test_register_makes_ours_the_transport_of_every_redis_scheme() -> None:
    from kombu.transport import resolve_transport

    from core.transport import SentinelTransport, Transport, register

    register()
    assert resolve_transport("redis") is Transport
    assert resolve_transport("rediss") is Transport
    assert resolve_transport("sentinel") is SentinelTransport
