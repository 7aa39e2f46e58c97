"""The organizer order page in Debian's headless Chromium against a live `ticketq api` on loopback:
sign in, see the coloured badges, resend five times, the sixth hits the per-user limit.
Writes var/screenshots/orders-page.png for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import RESEND_TASK
from models.orders import OrderEvent
from models.outbox import OutboxJob
from models.status import COLOURS, OrderStatus
from tests.api.test_pages import HOSTILE, seed_event
from tests.backends import Backends
from ticketq.embedded import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "var" / "screenshots" / "orders-page.png"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INSTALL_HINT = ("Debian's Chromium is required for the order page's browser test: "
                "`sudo apt-get install -y chromium chromium-driver` (or `make system-deps` as root)")
# What the stylesheet paints each contract colour as (computed style of .badge-<colour>).
BADGE_RGB = {"yellow": "rgb(250, 204, 21)", "blue": "rgb(37, 99, 235)", "orange": "rgb(249, 115, 22)",
             "green": "rgb(22, 163, 74)", "red": "rgb(220, 38, 38)", "grey": "rgb(107, 114, 128)"}
LIMIT_TEXT = re.compile(r"^Only 5 resend actions are allowed in a minute\. Try again in (\d+) seconds\.$")


@pytest.fixture
def live_api(db: sessionmaker[Session], backends: Backends) -> Iterator[str]:
    """A real `ticketq api` process on loopback, on this run's database and Redis."""
    import redis

    with redis.Redis.from_url(backends.redis_url) as client:  # other tests' resends must not count here
        for pattern in ("ticketq-limits*", "LIMITS*"):
            for key in client.scan_iter(pattern):
                client.delete(key)
    port = free_port()
    log_path = backends.root / "logs" / "orders-page-api.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ticketq = Path(sys.executable).with_name("ticketq")
    with log_path.open("ab") as log:
        process = subprocess.Popen([str(ticketq), "api", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, log_path)
        yield base
    finally:
        stop_process(process, 15)
        with redis.Redis.from_url(backends.redis_url) as client:  # a later test's worker must not see them
            client.delete("orders", "documents", "mail")


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ticketq api exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"ticketq api did not answer /healthz within {timeout}s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Debian Chromium through /usr/bin/chromedriver; Selenium Manager never downloads."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}. {INSTALL_HINT}")
    monkeypatch.setenv("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="ticketq-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1500,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: Any, condition: Any, timeout: float = 10) -> Any:
    return WebDriverWait(driver, timeout).until(condition)


def _next_message(driver: Any, seq: int) -> tuple[str, str]:
    """Wait for the page's message box to show message number `seq`; return (text, kind)."""
    box = driver.find_element("id", "message")
    _wait(driver, lambda d: int(box.get_attribute("data-seq")) >= seq)
    return box.text, box.get_attribute("class")


def _statuses(driver: Any) -> list[str]:
    """The rows' statuses, read in one script call (the table is replaced wholesale on every load)."""
    return list(driver.execute_script(
        "return [...document.querySelectorAll('#orders tbody tr')].map(r => r.dataset.status)"))


def _rows(driver: Any) -> dict[str, Any]:
    return {row.get_attribute("data-status"): row for row in driver.find_elements("css selector", "#orders tbody tr")}


def test_sign_in_see_badges_resend_five_times_then_hit_the_limit(
    live_api: str, browser: Any, db: sessionmaker[Session]
) -> None:
    seeded = seed_event(db)
    browser.get(f"{live_api}/events/{seeded['event_id']}/orders")
    browser.find_element("id", "token").send_keys("not-a-token")
    browser.find_element("id", "sign-in-button").click()
    text, kind = _next_message(browser, 1)  # the API's errors[0].detail, e.g. "Invalid or revoked token"
    assert kind == "error" and "token" in text.lower(), text
    assert browser.find_element("id", "sign-in").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('ticketq.token')") is None

    browser.find_element("id", "token").send_keys(seeded["token"])
    browser.find_element("id", "sign-in-button").click()
    _wait(browser, lambda d: len(_statuses(d)) == 6)
    assert browser.execute_script("return sessionStorage.getItem('ticketq.token')") == seeded["token"]
    assert browser.find_element("id", "event-name").text == "· PyCon <Test>"

    rows = _rows(browser)
    for status in OrderStatus:
        badge = rows[status.value].find_element("css selector", ".badge")
        assert badge.text.lower() == status.value
        assert badge.value_of_css_property("background-color").replace("rgba", "rgb").replace(", 1)", ")") \
            == BADGE_RGB[COLOURS[status]], status
        buttons = rows[status.value].find_elements("css selector", "button.resend")
        assert len(buttons) == (1 if status in (OrderStatus.PLACED, OrderStatus.COMPLETED) else 0), status
    assert HOSTILE in browser.find_element("id", "orders").text  # shown as text, never run
    assert browser.execute_script("return document.querySelectorAll('#orders script').length") == 0

    placed = seeded["orders"][OrderStatus.PLACED]
    button = rows["placed"].find_element("css selector", "button.resend")
    for seq in range(2, 7):
        button.click()
        assert _next_message(browser, seq) == (f"Confirmation emails for order {placed} have been queued", "success")
    button.click()
    _next_message(browser, 7)
    # The box was seen at number 7 still showing the last success (joined resends answer sooner): wait for it.
    _wait(browser, lambda d: d.find_element("id", "message").get_attribute("class") == "error")
    text, kind = _next_message(browser, 7)
    limited = LIMIT_TEXT.match(text)
    assert limited and kind == "error", text
    assert 0 < int(limited.group(1)) <= 60
    with db() as s:  # one resend job went through the outbox, the four after it joined it; the sixth wrote none
        jobs = s.scalars(sa.select(OutboxJob.args).where(OutboxJob.task == RESEND_TASK)).all()
        joined = s.scalars(sa.select(OrderEvent.kind).where(OrderEvent.kind.like("resend-%"))).all()
    assert [args[0] for args in jobs] == [placed]
    assert sorted(joined) == ["resend-joined"] * 4 + ["resend-requested"]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    print(f"\norder page screenshot: {SCREENSHOT}")

    Select(browser.find_element("id", "status-filter")).select_by_value("completed")
    _wait(browser, lambda d: _statuses(d) == ["completed"])
    assert "status=completed" in browser.current_url
    emails = _rows(browser)["completed"].find_element("css selector", "ul.emails").text
    assert "confirmation-attendee → ann@example.org failed" in emails
