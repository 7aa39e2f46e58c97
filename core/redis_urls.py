"""REDIS_URL in each library's own form: Celery's broker and result backend, `limits`, redbeat, redis-py.

One REDIS_URL names the Redis that carries everything (broker, results, rate limits, beat's lock):

- `redis://[[user]:password@]host:6379/0`: one server;
- `rediss://…` the same over TLS (the certificate is verified unless `?ssl_cert_reqs=none`);
- `sentinel://[[user]:password@]host1:26379[,host2:26379…]/MASTER[/DB]` (or `redis+sentinel://`):
  Redis Sentinel; the sentinels tell every client which server is the master now, so a failover
  needs no configuration change. The password is the master's; `?sentinel_password=` gives the
  sentinels' own if they have one.

Each library spells a Sentinel differently (kombu and Celery's result backend: `sentinel://h1;sentinel://h2`
plus a `master_name` transport option; `limits`: `redis+sentinel://h1,h2/master`; redbeat: `redis-sentinel://`
plus a list of sentinels in its options); this module is the one place that knows how.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import redis
from redis.sentinel import Sentinel

from core.settings import ConfigurationError

SENTINEL_SCHEMES = ("sentinel", "redis+sentinel")
PLAIN_SCHEMES = ("redis", "rediss")
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisTarget:
    """What a REDIS_URL says, whatever its form."""

    url: str
    sentinel: bool
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()  # the sentinels (Sentinel) or the server (plain)
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    query: dict[str, str] = field(default_factory=dict)

    def auth(self) -> str:
        if self.password is None and self.username is None:
            return ""
        user = quote(self.username or "", safe="")
        return f"{user}:{quote(self.password or '', safe='')}@"

    def redacted(self) -> str:
        """For banners and logs: the URL without its password."""
        url = self.url
        for secret in (self.password, self.sentinel_password):
            if secret:
                url = url.replace(quote(secret, safe=""), "***").replace(secret, "***")
        return url


def parse(url: str) -> RedisTarget:
    """Read REDIS_URL; a clear ConfigurationError for a scheme or shape we do not know."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    if scheme in PLAIN_SCHEMES:
        db = parts.path.strip("/") or query.pop("db", "0")
        return RedisTarget(url, sentinel=False, tls=scheme == "rediss",
                           hosts=((parts.hostname or "127.0.0.1", parts.port or 6379),), db=_db(db, url),
                           username=_unquoted(parts.username), password=_unquoted(parts.password), query=query)
    if scheme not in SENTINEL_SCHEMES:
        raise ConfigurationError(
            f"REDIS_URL scheme {scheme!r} is not supported: use redis://, rediss:// (TLS) or "
            "sentinel://host1:26379,host2:26379/MASTER/DB (Redis Sentinel)")
    netloc = parts.netloc.rpartition("@")[2]
    hosts = tuple(_host_port(item, url) for item in netloc.split(",") if item)
    path = [p for p in parts.path.split("/") if p]
    if not hosts or not path or len(path) > 2:
        raise ConfigurationError(
            f"REDIS_URL {RedisTarget(url, True).redacted()!r}: a Sentinel URL names its sentinels and the "
            "master: sentinel://[:password@]host1:26379[,host2:26379]/MASTER[/DB]")
    return RedisTarget(url, sentinel=True, hosts=hosts, master=path[0], db=_db(path[1] if len(path) > 1 else "0", url),
                       username=_unquoted(parts.username), password=_unquoted(parts.password),
                       sentinel_password=query.pop("sentinel_password", None), query=query)


def _unquoted(value: str | None) -> str | None:
    return unquote(value) if value is not None else None


def _db(value: str, url: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"REDIS_URL: database {value!r} is not a number") from None


def _host_port(item: str, url: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep:
        return item, SENTINEL_PORT
    try:
        return host, int(port)
    except ValueError:
        raise ConfigurationError(f"REDIS_URL: {item!r} is not host:port") from None


def _with_tls_default(url: str, target: RedisTarget) -> str:
    """Celery refuses a rediss:// URL without ssl_cert_reqs; the safe default is to verify."""
    if not target.tls or "ssl_cert_reqs" in target.query:
        return url
    return f"{url}{'&' if '?' in url else '?'}ssl_cert_reqs=required"


def _sentinel_chain(target: RedisTarget) -> str:
    """kombu's and Celery's form: one sentinel:// per sentinel, `;`-separated, auth and db on each."""
    extra = f"?{urlencode(target.query)}" if target.query else ""
    return ";".join(f"sentinel://{target.auth()}{host}:{port}/{target.db}{extra}" for host, port in target.hosts)


def _sentinel_options(target: RedisTarget) -> dict[str, Any]:
    options: dict[str, Any] = {"master_name": target.master}
    if target.sentinel_password:
        options["sentinel_kwargs"] = {"password": target.sentinel_password}
    return options


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """(broker_url, transport options to add to broker_transport_options)."""
    target = parse(url)
    if target.sentinel:
        return _sentinel_chain(target), _sentinel_options(target)
    return _with_tls_default(url, target), {}


def celery_backend(url: str) -> tuple[str, dict[str, Any]]:
    """(result_backend, options to add to result_backend_transport_options)."""
    return celery_broker(url)


def limits_storage(url: str) -> tuple[str, dict[str, Any]]:
    """(storage URI, keyword options) for `limits.storage.storage_from_string`."""
    target = parse(url)
    if not target.sentinel:
        return url, {}
    hosts = ",".join(f"{host}:{port}" for host, port in target.hosts)
    # The moving window reads what it just wrote: read the master, never a lagging replica. The sentinels
    # get their own password (or none), not the master's, which `limits` would otherwise send them.
    options: dict[str, Any] = {"db": target.db, "use_replicas": False,
                               "sentinel_kwargs": {"password": target.sentinel_password}}
    return f"redis+sentinel://{target.auth()}{hosts}/{target.master}", options


def redbeat(url: str) -> tuple[str, dict[str, Any]]:
    """(redbeat_redis_url, redbeat_redis_options): where beat keeps its schedule and its lock."""
    target = parse(url)
    if not target.sentinel:
        return _with_tls_default(url, target), {"socket_timeout": 5, "socket_connect_timeout": 5}
    options: dict[str, Any] = {"sentinels": list(target.hosts), "service_name": target.master, "db": target.db,
                               "password": target.password, "socket_timeout": 5}
    if target.username:
        options["username"] = target.username
    if target.sentinel_password:
        options["sentinel_kwargs"] = {"password": target.sentinel_password}
    return f"redis-sentinel://{target.auth()}{target.hosts[0][0]}:{target.hosts[0][1]}/{target.db}", options


def redis_client(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for any REDIS_URL form; with Sentinel it follows the master across failovers."""
    target = parse(url)
    if not target.sentinel:
        return redis.Redis.from_url(_with_tls_default(url, target) if target.tls else url, **options)
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts), sentinel_kwargs={"password": target.sentinel_password, **timeouts}, **timeouts)
    client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        target.master, db=target.db, username=target.username, password=target.password, **options)
    return client


def display(url: str) -> str:
    """REDIS_URL for a banner: no password."""
    try:
        return parse(url).redacted()
    except ConfigurationError:
        return url.rpartition("@")[2]
