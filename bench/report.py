"""Result rows, the printed table, and the Markdown document each run rewrites with its latest table."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import subprocess
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import ROOT, cpu_count


@dataclass(frozen=True)
class Row:
    """One measured line: `met` is None where the issue sets no goal (a reference value)."""

    case: str
    metric: str
    value: str
    goal: str = ""
    met: bool | None = None


def fmt(value: float, unit: str = "", digits: int = 2) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}{(' ' + unit) if unit else ''}"


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def table(rows: Sequence[Row]) -> str:
    header = ("case", "metric", "value", "goal", "result")
    body = [(r.case, r.metric, r.value, r.goal, verdict(r.met)) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(lines)


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| case | metric | value | goal | result |", "|---|---|---|---|---|"]
    lines += [f"| {r.case} | {r.metric} | {r.value} | {r.goal} | {verdict(r.met)} |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    harfbuzz = "present" if _has_harfbuzz_subset() else "ABSENT (PDFs 5-7x slower)"
    return (f"{platform.node()}, {cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, libharfbuzz-subset0 {harfbuzz}")


def _has_harfbuzz_subset() -> bool:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
    return "libharfbuzz-subset.so.0" in out.stdout


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() or "unknown"


def write_doc(path: Path, title: str, command: str, intro: str, rows: Sequence[Row], notes: Sequence[str],
              started: dt.datetime, seconds: float) -> None:
    text = [
        f"# {title}", "", intro, "",
        "## Latest run", "",
        f"- Reproduce: `{command}`",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC, took {seconds:.0f} s, commit {commit()}",
        f"- Machine: {machine()}",
        "- Ratios are measured side by side in the same run, on the same machine and services.",
        "", markdown(rows), "", "## Notes on this run", "",
        *[f"- {n}" for n in notes], "",
    ]
    path.write_text("\n".join(text))


Scenario = Callable[[Any, bool], tuple[list[Row], list[str]]]


def run_scenarios(name: str, scenarios: dict[str, Scenario], argv: Sequence[str] | None, doc: Path | None,
                  title: str, intro: str) -> int:
    """Parse flags, run the chosen scenarios on one harness, print the table, rewrite the doc."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not a measurement")
    parser.add_argument("--only", action="append", choices=sorted(scenarios), help="run only these (repeatable)")
    parser.add_argument("--no-doc", action="store_true", help="print the table without rewriting the doc")
    args = parser.parse_args(argv)
    from bench.harness import Harness

    started = dt.datetime.now(dt.UTC)
    rows: list[Row] = []
    notes: list[str] = []
    failed = False
    with Harness(name) as harness:
        for key in args.only or list(scenarios):
            print(f"== {key} ...", flush=True)
            try:
                got, extra = scenarios[key](harness, args.quick)
            except Exception as exc:
                traceback.print_exc()
                error = f"error: {type(exc).__name__}: {exc}"[:160]
                got, extra, failed = [Row(key.upper(), "run", error, "", False)], [], True
            rows += got
            notes += extra
            print(table(got), flush=True)
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    print(f"\n{title} ({seconds:.0f} s)\n{table(rows)}")
    if doc is not None and not args.no_doc and not args.quick and not args.only:
        command = f"make {name}"
        write_doc(doc, title, command, intro, rows, notes, started, seconds)
        print(f"wrote {doc.relative_to(ROOT)}")
    return 1 if failed else 0
