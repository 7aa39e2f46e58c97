"""What the demo shows a person: a progress bar while jobs run, and the closing summary table."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

ANSI = {"yellow": "33", "blue": "34", "orange": "38;5;208", "green": "32", "red": "31", "grey": "90"}
STATUSES = ("initializing", "placed", "pending", "completed", "expired", "cancelled")
COLOURS = dict(zip(STATUSES, ("yellow", "blue", "orange", "green", "red", "grey"), strict=True))


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, colour: str, enabled: bool) -> str:
    return f"\033[{ANSI[colour]}m{text}\033[0m" if enabled and colour in ANSI else text


class Progress:
    """A one-line bar on a terminal; plain lines (only when something changed) elsewhere."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last = ""

    def update(self, label: str, done: int, total: int, detail: str = "") -> None:
        filled = self.width if total <= 0 else min(self.width, self.width * done // total)
        line = f"  {label:<16} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {detail}".rstrip()
        if line == self._last:
            if self.tty:
                self._write(line)
            return
        self._last = line
        self._write(line)

    def _write(self, line: str) -> None:
        if self.tty:
            elapsed = f" {time.monotonic() - self.started:5.1f}s"
            self.stream.write("\r" + (line + elapsed).ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self._last = ""


@dataclass
class Report:
    """Everything the summary prints; `failures` non-empty means the demo exits 1."""

    seconds: float = 0
    orders: list[tuple[str, str, str, list[str]]] = field(default_factory=list)  # label, id, colour, path
    pdfs: list[Path] = field(default_factory=list)
    emails: Counter[str] = field(default_factory=Counter)
    expected_emails: Counter[str] = field(default_factory=Counter)
    eml_files: int = 0
    languages: dict[str, set[str]] = field(default_factory=dict)  # order -> its emails' Content-Language
    resend: str = ""
    webhooks: Counter[str] = field(default_factory=Counter)
    expected_webhooks: Counter[str] = field(default_factory=Counter)
    paths: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    leftovers: list[int] = field(default_factory=list)


def render(report: Report, stream: TextIO = sys.stdout) -> str:
    colour = use_colour(stream)
    out = [f"\nticketq demo: summary ({report.seconds:.1f}s)"]
    if report.orders:
        out += _tables(report, colour)
    out += ["", "Where to find them"]
    out += [f"  {name:<9} {where}" for name, where in report.paths.items()]
    out.append("")
    out.append(f"Processes left behind: {report.leftovers if report.leftovers else 'none'}")
    if report.failures:
        out.append(paint("FAILED:", "red", colour))
        out += [f"  - {failure}" for failure in report.failures]
    else:
        out.append(paint("OK: every order reached its status, every PDF and email is there.", "green", colour))
    return "\n".join(out)


def _tables(report: Report, colour: bool) -> list[str]:
    out = ["", "Orders by status: how many ended in it, how many passed through it, and which ended there"]
    out.append(f"  {'status':<13} {'colour':<9} {'ended':>5} {'passed':>6}  orders")
    final = Counter(path[-1] for _, _, _, path in report.orders if path)
    reached = Counter(s for _, _, _, path in report.orders for s in set(path))
    for status in STATUSES:
        names = ", ".join(f"{label} {ident[:8]}" for label, ident, _, path in report.orders
                          if path and path[-1] == status)
        # A coloured badge on a terminal that shows colour; the colour's name in words everywhere.
        shade = COLOURS[status]
        badge = f"{paint(chr(0x25CF), shade, colour)} {shade:<7}" if colour else f"{shade:<9}"
        out.append(f"  {status:<13} {badge} {final[status]:>5} {reached[status]:>6}  {names}")
    out += ["", "  order paths:"]
    out += [f"    {label:<10} {ident}  {' -> '.join(path)}"
            + (f"  (emails in {', '.join(sorted(report.languages[ident]))})" if ident in report.languages else "")
            for label, ident, _, path in report.orders]
    out += ["", f"PDFs written: {len(report.pdfs)}"]
    out += ["", "Emails delivered by kind (per recipient: delivered / expected)"]
    for kind in sorted(set(report.emails) | set(report.expected_emails)):
        out.append(f"  {kind:<24} {report.emails[kind]:>3} / {report.expected_emails[kind]}")
    out.append(f"  {'total':<24} {sum(report.emails.values()):>3} / {sum(report.expected_emails.values())}"
               f"   ({report.eml_files} .eml files this run)")
    if report.resend:
        out += ["", f"Resend: {report.resend}"]
    if report.expected_webhooks:
        out += ["", "Webhooks received, signature verified, by type (received / expected)"]
        for kind in sorted(set(report.webhooks) | set(report.expected_webhooks)):
            out.append(f"  {kind:<24} {report.webhooks[kind]:>3} / {report.expected_webhooks[kind]}")
    return out
