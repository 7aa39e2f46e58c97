"""What the sink accepted, counted as logical emails: (order, kind, recipient, batch).

The batch comes from the delivery record the Message-ID names (`<ticketq.<order>.<delivery id>@…>`),
so a resend is a new email while a retry or a redelivered job's second copy is a duplicate. Copies of
one Message-ID are counted too: a receiver drops those, so they are the harmless kind of duplicate.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.servers import Accepted
from ticketq.processes import Process

MESSAGE_ID = re.compile(r"<ticketq\.[^.>]+\.(\d+)@")
LogicalKey = tuple[str, str, tuple[str, ...], str]  # order, kind, recipients, batch


@dataclass
class Tally:
    copies: dict[LogicalKey, list[float]] = field(default_factory=dict)  # acceptance times of each copy
    by_message_id: Counter[str] = field(default_factory=Counter)
    unattributed: int = 0  # accepted messages whose Message-ID names no delivery record

    @property
    def duplicates(self) -> int:
        """Copies beyond the first of one logical email."""
        return sum(len(times) - 1 for times in self.copies.values())

    @property
    def repeated_message_ids(self) -> int:
        return sum(n - 1 for n in self.by_message_id.values())

    def emails_of(self) -> Counter[tuple[str, str]]:
        """(order, kind) -> how many distinct logical emails arrived."""
        return Counter((order, kind) for order, kind, _, _ in self.copies)

    def second_copies(self) -> list[tuple[float, float]]:
        """(first copy, later copy) acceptance times of every duplicate."""
        return [(times[0], later) for times in self.copies.values() for later in times[1:]]

    def last_at(self) -> float:
        return max((times[0] for times in self.copies.values()), default=float("nan"))


def tally(database_url: str, accepted: Iterable[Accepted], orders: Iterable[str]) -> Tally:
    """Count the accepted messages of `orders`, each under its logical key."""
    import sqlalchemy as sa

    from models.db import get_sessionmaker
    from models.deliveries import EmailDelivery

    wanted = set(orders)
    mine = sorted((a for a in accepted if a.order in wanted), key=lambda a: a.at)
    ids = {int(m.group(1)) for a in mine if (m := MESSAGE_ID.search(a.message_id))}
    with get_sessionmaker(database_url)() as session:
        batches = dict(session.execute(sa.select(EmailDelivery.id, EmailDelivery.batch)
                                       .where(EmailDelivery.id.in_(ids))).all()) if ids else {}
    result = Tally()
    for a in mine:
        match = MESSAGE_ID.search(a.message_id)
        batch = batches.get(int(match.group(1))) if match else None
        if batch is None:  # keep it apart rather than merge it with another email
            result.unattributed += 1
            batch = f"? {a.message_id}"
        result.copies.setdefault((a.order, a.kind, a.recipients, batch), []).append(a.at)
        result.by_message_id[a.message_id] += 1
    return result


def per_hundred_kills(duplicates: int, kills: int) -> float:
    return 100 * duplicates / kills if kills else float("nan")


def log_count(procs: Iterable[Process], needle: str) -> int:
    """Lines containing `needle` in the logs of these processes."""
    return sum(proc.log.read_text(errors="replace").count(needle) for proc in procs if proc.log.exists())
