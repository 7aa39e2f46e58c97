"""Worker log lines name the task id and the order they are about (pure logic, no backends)."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

from worker import tasklog as task_logging

ORDER = "0123456789abcdef0123456789abcdef"


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger("test.ticketq.worker.logging")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    task_logging.install(logger, fmt="[task=%(task_id)s order=%(order)s] %(message)s")
    return logger, stream


def test_order_of_takes_the_first_argument_or_a_named_one() -> None:
    assert task_logging.order_of("orders.confirm", [ORDER], {}) == ORDER
    assert task_logging.order_of("orders.resend_confirmation", ["abc", 7], {}) == "abc"
    assert task_logging.order_of("mail.send", [42], {}) == "-"
    assert task_logging.order_of("mail.send", [], {"identifier": ORDER}) == ORDER
    assert task_logging.order_of("documents.render", [ORDER, 3], None) == ORDER
    assert task_logging.order_of("orders.expire_stale", [], {}) == "-"


def test_lines_inside_a_task_carry_its_id_and_order() -> None:
    logger, stream = capture()
    logger.info("outside")
    task_logging._enter_task(task_id="t-1", task=SimpleNamespace(name="orders.confirm"), args=[ORDER], kwargs={})
    logger.info("rendering")
    task_logging._leave_task()
    logger.info("after")
    assert stream.getvalue().splitlines() == [
        "[task=- order=-] outside", f"[task=t-1 order={ORDER}] rendering", "[task=- order=-] after"]


def test_a_task_that_names_its_order_late_carries_it_from_then_on() -> None:
    logger, stream = capture()
    task_logging._enter_task(task_id="t-2", task=SimpleNamespace(name="mail.send"), args=[42], kwargs={})
    logger.info("loading delivery %s", 42)
    logger.info("order %s: confirmation-buyer sent to %s", ORDER, "bea@example.com")
    logger.info("done")
    task_logging._leave_task()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[task=t-2 order=-] loading delivery 42"
    assert lines[1].startswith(f"[task=t-2 order={ORDER}] order {ORDER}")
    assert lines[2] == f"[task=t-2 order={ORDER}] done"


def test_bind_order_names_the_order_for_the_rest_of_the_task() -> None:
    logger, stream = capture()
    task_logging._enter_task(task_id="t-3", task=SimpleNamespace(name="mail.send"), args=[9], kwargs={})
    task_logging.bind_order(ORDER)
    logger.info("sending")
    task_logging._leave_task()
    assert stream.getvalue() == f"[task=t-3 order={ORDER}] sending\n"


def test_celerys_received_line_in_the_main_process_carries_task_and_order() -> None:
    logger, stream = capture()
    logger.info("Task %(name)s[%(id)s] received",
                {"name": "orders.confirm", "id": "outbox-7-0", "args": f"['{ORDER}']", "kwargs": "{}"})
    logger.info("Task %(name)s[%(id)s] received", {"name": "mail.send", "id": "m-1", "args": "[12]", "kwargs": "{}"})
    assert stream.getvalue().splitlines() == [
        f"[task=outbox-7-0 order={ORDER}] Task orders.confirm[outbox-7-0] received",
        "[task=m-1 order=-] Task mail.send[m-1] received"]
