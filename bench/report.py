"""Result rows, the printed table, and the Markdown document each run rewrites with its latest table."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.harness import cpu_count
from bench.servers import ROOT


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
    """HEAD, and the tracked files the run saw changed but not committed (others' work in progress)."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    head = out.stdout.strip() or "unknown"
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                            text=True, cwd=ROOT).stdout.splitlines()
    dirty = [line[3:] for line in status if not line[3:].startswith("docs/")]
    return f"{head} plus uncommitted changes to {', '.join(dirty)}" if dirty else head


def write_doc(path: Path, title: str, command: str, intro: str, rows: Sequence[Row], notes: Sequence[str],
              started: dt.datetime, seconds: float, analysis: Path | None = None) -> None:
    """The doc: this run's table and notes, and a link to the hand-written analysis beside the scripts."""
    text = [
        f"# {title}", "", intro, "",
        "## Latest run", "",
        f"- Reproduce: `{command}`",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC, took {seconds:.0f} s, commit {commit()}",
        f"- Machine: {machine()}",
        "- Ratios are measured side by side in the same run, on the same machine and services.",
        f"- Load average (1/5/15 min) when the run ended: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(anything well above 0 beyond this run means other work shared the 2 cores).",
        "", markdown(rows), "", "## Notes on this run", "",
        *[f"- {n}" for n in notes], "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    if analysis is not None and analysis.exists():
        link = os.path.relpath(analysis, path.parent)
        text += ["## Analysis", "", f"What these numbers mean and their history: [{link}]({link}).", ""]
    path.write_text("\n".join(text))


Scenario = Callable[[Any, bool], tuple[list[Row], list[str]]]


def run_scenarios(name: str, scenarios: dict[str, Scenario], argv: Sequence[str] | None, doc: Path | None,
                  title: str, intro: str, alongside: frozenset[str] = frozenset(), analysis: Path | None = None) -> int:
    """Parse flags, run the chosen scenarios on one harness, print the table, rewrite the doc.

    Scenarios in `alongside` (mostly waiting, e.g. an outage) run at the same time in a child process
    with a harness of their own, so the whole run fits its time budget.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--quick", action="store_true",
                        help="small counts and no wait for quiet cores: a smoke run, not a measurement")
    parser.add_argument("--only", action="append", choices=sorted(scenarios), help="run only these (repeatable)")
    parser.add_argument("--no-doc", action="store_true", help="print the table without rewriting the doc")
    parser.add_argument("--rows-json", type=Path, help=argparse.SUPPRESS)  # a child's results for its parent
    args = parser.parse_args(argv)
    # A SIGTERM (a timeout, a CI runner) unwinds like Ctrl-C, so every server we started is stopped.
    signal.signal(signal.SIGTERM, _terminate)
    started = dt.datetime.now(dt.UTC)
    chosen = args.only or list(scenarios)
    children = {key: _spawn_child(name, key, args.quick) for key in chosen if key in alongside and len(chosen) > 1}
    results = dict(_run_here(name, scenarios, [k for k in chosen if k not in children], args.quick))
    results.update({key: _collect_child(key, *child) for key, child in children.items()})
    rows = [row for key in chosen for row in results[key][0]]
    notes = [note for key in chosen for note in results[key][1]]
    if args.rows_json:
        args.rows_json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "notes": notes}))
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    print(f"\n{title} ({seconds:.0f} s)\n{table(rows)}")
    if doc is not None and not args.no_doc and not args.quick and not args.only:
        write_doc(doc, title, f"make {name}", intro, rows, notes, started, seconds, analysis)
        print(f"wrote {doc.relative_to(ROOT)}")
    return 1 if any(r.metric == "run" and r.met is False for r in rows) else 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_here(name: str, scenarios: dict[str, Scenario], keys: list[str],
              quick: bool) -> Iterator[tuple[str, tuple[list[Row], list[str]]]]:
    from bench.harness import Harness

    if not keys:
        return
    with Harness(name, quick=quick) as harness:
        for key in keys:
            print(f"== {key} ...", flush=True)
            try:
                got, extra = scenarios[key](harness, quick)
            except Exception as exc:
                traceback.print_exc()
                got, extra = [Row(key.upper(), "run", f"error: {type(exc).__name__}: {exc}"[:160], "", False)], []
            print(table(got), *extra, sep="\n", flush=True)
            yield key, (got, extra)


def _spawn_child(name: str, key: str, quick: bool) -> tuple[subprocess.Popen[bytes], Path]:
    out = Path(tempfile.mkstemp(prefix=f"ticketq-{name}-{key}-", suffix=".json")[1])
    args = [sys.executable, "-m", name, "--only", key, "--no-doc", "--rows-json", str(out), *(["--quick"] * quick)]
    print(f"== {key} runs alongside, in process group of its own", flush=True)
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True), out


def _collect_child(key: str, process: subprocess.Popen[bytes], out: Path) -> tuple[list[Row], list[str]]:
    code = process.wait()
    try:
        data = json.loads(out.read_text() or "{}")
    except ValueError:
        data = {}
    finally:
        out.unlink(missing_ok=True)
    failed = [Row(key.upper(), "run", f"error: exit status {code}", "", False)]
    rows = [Row(**r) for r in data.get("rows", [])] or failed
    print(f"== {key} (alongside)\n{table(rows)}", flush=True)
    return rows, list(data.get("notes", []))
