"""The suite's one way to wait: poll for the observable end, never sleep a guessed delay."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, message: str | Callable[[], str] = "condition",
               interval: float = 0.1) -> T:
    """Call `predicate` until it returns something truthy and return that; past `timeout` seconds,
    fail with `message` (a callable is called then, e.g. to show a log's tail as it is at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for "
                                 f"{message() if callable(message) else message}")
        time.sleep(interval)
