"""Confirmation lag: from an order's completion (or placement) to the server's acceptance of the last
email of its confirmation, observed by the job that sent that last email (README "Metrics")."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.metrics import confirmation_lag
from models.base import utcnow
from models.deliveries import EmailDelivery
from models.orders import Order
from services.outcomes import Outcome
from services.recipients import CONFIRMATION_BATCH
from services.sending import UNSENT

# Outcomes that leave an email of the batch for later: the batch is not done yet.
NOT_DONE = frozenset({Outcome.RETRY, Outcome.BUSY, Outcome.NEEDS_DOCUMENTS})


def observe_confirmation(factory: sessionmaker[Session], order: Order, batch: str,
                         outcomes: Mapping[int, Outcome]) -> None:
    """After a pass over `batch`: when it sent something and no email of the confirmation is left
    unsent (a retry of one email only sees its own outcome, so the database is asked)."""
    done = outcomes.values()
    if batch != CONFIRMATION_BATCH or Outcome.SENT not in done or any(o in NOT_DONE for o in done):
        return
    with factory() as session:
        left = session.scalar(sa.select(sa.func.count()).where(
            EmailDelivery.order_id == order.id, EmailDelivery.batch == batch, EmailDelivery.state.in_(UNSENT)))
    if not left:
        # completed_at is set when an order completes; a placed order's last change is its placement.
        confirmed_at = order.completed_at or order.updated_at
        confirmation_lag((utcnow() - confirmed_at).total_seconds())
