"""Task names, queues and task ids (contract section 7): what producers, the Celery app and the
job records agree on."""

from __future__ import annotations

CONFIRM_TASK = "orders.confirm"
RESEND_TASK = "orders.resend_confirmation"
CANCELLATION_TASK = "orders.send_cancellation"
PAYMENT_RECEIVED_TASK = "orders.send_payment_received"
EXPIRE_TASK = "orders.expire_stale"
RELAY_TASK = "outbox.relay"
DELIVER_BATCH_TASK = "documents.deliver_batch"
SEND_DELIVERY_TASK = "mail.send_delivery"
WEBHOOK_TASK = "webhooks.send"
PURGE_KEYS_TASK = "idempotency.purge_keys"
PURGE_WEBHOOKS_TASK = "webhooks.purge"
ORDERS_QUEUE, DOCUMENTS_QUEUE, MAIL_QUEUE = "orders", "documents", "mail"

# Where each job runs: confirming renders PDFs (documents); resends, cancellations and retries
# of one email only send (mail); beat's own jobs are fast (orders).
QUEUE_OF = {
    CONFIRM_TASK: DOCUMENTS_QUEUE,
    PAYMENT_RECEIVED_TASK: DOCUMENTS_QUEUE,  # renders the invoice marked paid
    DELIVER_BATCH_TASK: DOCUMENTS_QUEUE,
    RESEND_TASK: MAIL_QUEUE,
    CANCELLATION_TASK: MAIL_QUEUE,
    SEND_DELIVERY_TASK: MAIL_QUEUE,
    EXPIRE_TASK: ORDERS_QUEUE,
    RELAY_TASK: ORDERS_QUEUE,
    WEBHOOK_TASK: MAIL_QUEUE,  # a webhook only talks HTTP, like a mail job only talks SMTP
    PURGE_KEYS_TASK: ORDERS_QUEUE,
    PURGE_WEBHOOKS_TASK: ORDERS_QUEUE,  # a few bounded deletes, like the key purge
}
# Beat's keys in Redis (celery-redbeat): the API's metrics read whether a beat holds the lock.
BEAT_KEY_PREFIX = "ticketq:beat:"
BEAT_LOCK_KEY = BEAT_KEY_PREFIX + ":lock"  # redbeat's lock key: "<prefix>:lock"
TASK_ID_PREFIX = "outbox-"
# The hard time limit of a job (celeryconfig); a job's lease outlasts it, so a lease that ran out
# means its holder is gone, not slow.
JOB_TIME_LIMIT = 60


def task_id_of(job_id: int) -> str:
    """The broker's task id of a job: the same every time it is sent, so a repeat is recognisable."""
    return f"{TASK_ID_PREFIX}{job_id}"


def job_id_of(task_id: str | None) -> int | None:
    suffix = (task_id or "").removeprefix(TASK_ID_PREFIX)
    return int(suffix) if task_id and task_id.startswith(TASK_ID_PREFIX) and suffix.isdigit() else None
