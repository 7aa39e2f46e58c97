"""The organizer pages in Debian's headless Chromium against a live `ticketq api` on loopback: sign in
with a token, see the coloured badges, resend five times (each confirmed), the sixth hits the per-user
limit; sign in with a one-time link, mark a bank transfer paid, cancel with the keyboard, search,
export, and use it all at phone width; a German browser gets the page in German (its 429 too), an
Arabic one right to left. Writes var/screenshots/orders-page*.png for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import RESEND_TASK
from models import EmailDelivery, Order
from models.logins import create_login_link
from models.orders import OrderEvent
from models.outbox import OutboxJob
from models.resending import JOINED, REQUESTED
from models.status import COLOURS, OrderStatus
from tests.api.seeds import HOSTILE, seed_event
from tests.backends import Backends, reset_windows
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
# The same 429 from the German catalog (Intl words the wait: "1 Sekunde", "42 Sekunden").
GERMAN_LIMIT_TEXT = re.compile(
    r"^Pro Minute sind nur 5 erneute Sendungen erlaubt\. Versuchen Sie es in (\d+) Sekunden? erneut\.$")
GERMAN_STATUS = {"initializing": "wird angelegt", "placed": "aufgegeben", "pending": "ausstehend",
                 "completed": "abgeschlossen", "expired": "abgelaufen", "cancelled": "storniert"}


@pytest.fixture
def live_api(db: sessionmaker[Session], backends: Backends) -> Iterator[str]:
    """A real `ticketq api` process on loopback, on this run's database and Redis."""
    import redis

    reset_windows(backends.redis_url)  # other tests' resends must not count here
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
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@contextmanager
def _chromium(monkeypatch: pytest.MonkeyPatch, downloads: Path, language: str | None = None) -> Iterator[Any]:
    """Headless Debian Chromium through /usr/bin/chromedriver; Selenium Manager never downloads.
    `language`: the browser's UI language and Accept-Language (navigator.languages), e.g. "de"."""
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
    prefs: dict[str, Any] = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    if language:
        options.add_argument(f"--lang={language}")
        prefs["intl.accept_languages"] = language
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    # Headless Chromium saves downloads (the CSV export) only where DevTools allows it.
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch, downloads: Path) -> Iterator[Any]:
    with _chromium(monkeypatch, downloads) as driver:
        yield driver


@pytest.fixture
def german_browser(monkeypatch: pytest.MonkeyPatch, downloads: Path) -> Iterator[Any]:
    with _chromium(monkeypatch, downloads, "de-DE,de") as driver:
        yield driver


@pytest.fixture
def arabic_browser(monkeypatch: pytest.MonkeyPatch, downloads: Path) -> Iterator[Any]:
    with _chromium(monkeypatch, downloads, "ar") as driver:
        yield driver


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


def _loads(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.loads || 0)"))


def _act(driver: Any, identifier: str, action: str) -> None:
    """Click the row's action, confirm it in the dialog, and wait until the table has reloaded."""
    before = _loads(driver)
    driver.find_element("css selector", f'tr[data-identifier="{identifier}"] button.{action}').click()
    dialog = driver.find_element("id", "confirm")
    _wait(driver, lambda d: dialog.get_attribute("open") is not None)
    driver.find_element("id", "confirm-yes").click()
    _wait(driver, lambda d: _loads(d) > before)


def _status_of(driver: Any, identifier: str) -> str:
    return str(driver.find_element("css selector", f'tr[data-identifier="{identifier}"]').get_attribute("data-status"))


@pytest.mark.slow(10)
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
        assert badge.text == status.value  # written as the API and the filter write it
        assert badge.value_of_css_property("background-color").replace("rgba", "rgb").replace(", 1)", ")") \
            == BADGE_RGB[COLOURS[status]], status
        buttons = rows[status.value].find_elements("css selector", "button.resend")
        assert len(buttons) == (1 if status in (OrderStatus.PLACED, OrderStatus.COMPLETED) else 0), status
    assert HOSTILE in browser.find_element("id", "orders").text  # shown as text, never run
    assert browser.execute_script("return document.querySelectorAll('#orders script').length") == 0

    placed = seeded["orders"][OrderStatus.PLACED]
    for seq in range(2, 7):
        _act(browser, placed, "resend")
        assert _next_message(browser, seq) == (f"Confirmation emails for order {placed} have been queued", "success")
    _act(browser, placed, "resend")
    text, kind = _next_message(browser, 7)
    limited = LIMIT_TEXT.match(text)
    assert limited and kind == "error", text
    assert 0 < int(limited.group(1)) <= 60
    with db() as s:  # each accepted resend is a job or joins the one still waiting; the sixth wrote none
        jobs = s.scalars(sa.select(OutboxJob.args).where(OutboxJob.task == RESEND_TASK)).all()
        asked = s.scalars(sa.select(OrderEvent.kind).where(OrderEvent.kind.in_((REQUESTED, JOINED)))).all()
    # How many joined depends on whether the run's worker (started by an earlier test, or not) took the
    # first job before the next click: tests/e2e/test_void_and_resend.py pins the join itself.
    assert {args[0] for args in jobs} == {placed} and len(asked) == 5
    assert sorted(asked) == [JOINED] * (5 - len(jobs)) + [REQUESTED] * len(jobs)

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    print(f"\norder page screenshot: {SCREENSHOT}")

    Select(browser.find_element("id", "status-filter")).select_by_value("completed")
    _wait(browser, lambda d: _statuses(d) == ["completed"])
    assert "status=completed" in browser.current_url
    emails = _rows(browser)["completed"].find_element("css selector", ".emails").text
    assert "confirmation-attendee → ann@example.org failed" in emails
    assert "Reply: 550 no such user" in emails  # a failed email's group is open, with the server's reply


@pytest.mark.slow(9)
def test_sign_in_with_a_link_then_mark_paid_cancel_search_export_and_use_a_phone(
    live_api: str, browser: Any, db: sessionmaker[Session], downloads: Path
) -> None:
    seeded = seed_event(db)
    placed, pending = seeded["orders"][OrderStatus.PLACED], seeded["orders"][OrderStatus.PENDING]
    completed = seeded["orders"][OrderStatus.COMPLETED]
    with db() as s, s.begin():
        s.execute(sa.update(Order).where(Order.identifier == placed).values(payment_mode="bank"))
        order_id = s.scalar(sa.select(Order.id).where(Order.identifier == completed))
        s.add(EmailDelivery(order_id=order_id, batch="resend-1", kind="confirmation-buyer",
                            recipient="buyer@example.org", state="sent"))
        _, token = create_login_link(s, "owner@example.org")

    browser.get(f"{live_api}/login?token={token}")
    assert "Sign in as owner@example.org" in browser.find_element("tag name", "h2").text
    browser.find_element("id", "login-button").click()
    _wait(browser, lambda d: d.current_url.endswith("/events") and d.find_elements("css selector", "#events tbody a"))
    cookie = browser.get_cookie("ticketq_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # out of any script's reach
    browser.find_element("link text", "PyCon <Test>").click()
    _wait(browser, lambda d: len(_statuses(d)) == 6)

    row = browser.find_element("css selector", f'tr[data-identifier="{placed}"]')
    assert row.find_element("css selector", ".payment").text == "bank"
    assert re.search(r"\d{4}, \d{2}:\d{2} (CET|CEST|GMT\+1|GMT\+2)$", row.find_element("css selector", ".created").text)
    groups = browser.find_element("css selector", f'tr[data-identifier="{completed}"] .emails').text
    assert groups.index("First confirmation") < groups.index("Resend 1")
    _act(browser, placed, "mark-paid")
    assert _status_of(browser, placed) == "completed"  # the table refreshed by itself
    assert browser.find_element("id", "message").text == f"Order {placed} is marked paid"

    # Keyboard only: Enter opens the dialog on "Back"; Escape changes nothing; Shift+Tab reaches the action.
    cancel = browser.find_element("css selector", f'tr[data-identifier="{pending}"] button.cancel')
    cancel.send_keys(Keys.ENTER)
    _wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "confirm-no")
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    _wait(browser, lambda d: d.find_element("id", "confirm").get_attribute("open") is None)
    assert _status_of(browser, pending) == "pending"
    before = _loads(browser)
    browser.find_element("css selector", f'tr[data-identifier="{pending}"] button.cancel').send_keys(Keys.ENTER)
    _wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "confirm-no")
    browser.switch_to.active_element.send_keys(Keys.SHIFT, Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "confirm-yes"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    _wait(browser, lambda d: _loads(d) > before)
    assert _status_of(browser, pending) == "cancelled"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT.with_name("orders-page-session.png")))
    search = browser.find_element("id", "search")
    search.send_keys("buyer 3")
    _wait(browser, lambda d: _statuses(d) == ["completed"])
    assert "q=buyer+3" in browser.current_url
    browser.find_element("id", "export").click()
    _wait(browser, lambda d: any(p.suffix == ".csv" for p in downloads.iterdir()))
    exported = next(p for p in downloads.iterdir() if p.suffix == ".csv").read_text().splitlines()
    assert len(exported) == 2 and exported[1].startswith(completed)
    with db() as s:
        statuses = {row.identifier: row.status for row in s.execute(sa.select(Order.identifier, Order.status))}
    assert (statuses[placed], statuses[pending]) == (OrderStatus.COMPLETED, OrderStatus.CANCELLED)

    browser.set_window_size(390, 844)  # a phone: cards, nothing scrolls sideways, actions in reach
    search.clear()
    search.send_keys(Keys.ENTER)
    _wait(browser, lambda d: len(_statuses(d)) == 6)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert not browser.find_element("css selector", "#orders thead").is_displayed()
    button = browser.find_element("css selector", f'tr[data-identifier="{completed}"] button.cancel')
    assert button.is_displayed() and button.rect["x"] + button.rect["width"] <= 390
    browser.save_screenshot(str(SCREENSHOT.with_name("orders-page-phone.png")))


def _sign_in(driver: Any, base: str, seeded: dict[str, Any]) -> None:
    """Open the event's order page, wait for its language, paste the token, wait for the six orders."""
    driver.get(f"{base}/events/{seeded['event_id']}/orders")
    _wait(driver, lambda d: d.execute_script("return document.documentElement.dataset.ready") == "true")
    driver.find_element("id", "token").send_keys(seeded["token"])
    driver.find_element("id", "sign-in-button").click()
    _wait(driver, lambda d: len(_statuses(d)) == 6)


def _texts(driver: Any, selector: str) -> list[str]:
    return list(driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim())", selector))


@pytest.mark.slow(15)
def test_a_german_browser_gets_the_page_its_statuses_and_the_limit_in_german(
    live_api: str, german_browser: Any, db: sessionmaker[Session]
) -> None:
    browser, seeded = german_browser, seed_event(db)
    browser.get(f"{live_api}/login?token=not-a-link")  # the sign-in link's page speaks German too
    _wait(browser, lambda d: d.find_element("tag name", "h2").text == "Dieser Link funktioniert nicht")
    assert browser.find_element("id", "invalid").text.startswith("Dieser Anmeldelink ist unbekannt")

    browser.get(f"{live_api}/events/{seeded['event_id']}/orders")
    _wait(browser, lambda d: d.execute_script("return document.documentElement.dataset.ready") == "true")
    assert browser.execute_script("return [document.documentElement.lang, document.documentElement.dir]") \
        == ["de", "ltr"]
    assert browser.find_element("css selector", "#sign-in h2").text == "Anmelden"
    assert browser.find_element("id", "sign-in-button").text == "Anmelden"
    assert "ticketq login-link you@example.org" in browser.find_element("css selector", "#sign-in p").text
    _sign_in(browser, live_api, seeded)

    assert _texts(browser, "#orders thead th span[data-i18n], #orders thead th[data-i18n]") == [
        "Bestellung", "Käufer", "Betrag", "Zahlung", "Status", "Erstellt", "E-Mails", "Aktionen"]
    assert browser.find_element("id", "refresh").text == "Aktualisieren"
    assert browser.find_element("id", "search").get_attribute("placeholder") == "Name, E-Mail oder Bestellcode"
    assert browser.title == "Bestellungen · PyCon <Test> · ticketq"
    assert re.fullmatch(r"Seite 1 von 1 · Bestellungen: 6", browser.find_element("id", "page-info").text)
    rows = _rows(browser)
    for status, german in GERMAN_STATUS.items():
        assert rows[status].find_element("css selector", ".badge").text == german, status
    assert [o.text for o in Select(browser.find_element("id", "status-filter")).options][1:] \
        == list(GERMAN_STATUS.values())
    emails = rows["completed"].find_element("css selector", ".emails").text
    assert "Erste Bestätigung" in emails and "confirmation-attendee → ann@example.org fehlgeschlagen" in emails
    assert "Antwort: 550 no such user" in emails
    assert "25,00 €" in rows["placed"].find_element("css selector", "td.num").text  # de-DE's currency format

    placed = seeded["orders"][OrderStatus.PLACED]
    browser.find_element("css selector", f'tr[data-identifier="{placed}"] button.resend').click()
    assert browser.find_element("id", "confirm-title").text == "Bestätigung erneut senden?"
    assert browser.find_element("id", "confirm-no").text == "Zurück"
    browser.find_element("id", "confirm-no").click()
    for seq in range(1, 6):
        _act(browser, placed, "resend")
        assert _next_message(browser, seq) == (
            f"Die Bestätigungs-E-Mails für Bestellung {placed} wurden in die Warteschlange gestellt", "success")
    _act(browser, placed, "resend")
    text, kind = _next_message(browser, 6)
    limited = GERMAN_LIMIT_TEXT.match(text)
    assert limited and kind == "error", text
    assert 0 < int(limited.group(1)) <= 60
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT.with_name("orders-page-de.png")))


@pytest.mark.slow(5)
def test_an_arabic_browser_gets_the_page_right_to_left(
    live_api: str, arabic_browser: Any, db: sessionmaker[Session]
) -> None:
    browser, seeded = arabic_browser, seed_event(db)
    _sign_in(browser, live_api, seeded)
    assert browser.execute_script("return [document.documentElement.lang, document.documentElement.dir]") \
        == ["ar", "rtl"]
    assert browser.find_element("css selector", "h1 span[data-i18n]").text == "الطلبات"
    assert _rows(browser)["completed"].find_element("css selector", ".badge").text == "مكتمل"
    # Right to left: the title on the right, the buttons on the left, the first column at the right edge.
    title, sign_out = browser.find_element("tag name", "h1"), browser.find_element("id", "sign-out")
    assert sign_out.rect["x"] + sign_out.rect["width"] < title.rect["x"]
    first, last = (browser.find_element("css selector", f"#orders thead th:{n}-child") for n in ("first", "last"))
    assert first.rect["x"] > last.rect["x"]
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT.with_name("orders-page-ar.png")))
