"""The version of ticketq that runs, from the installed package's metadata (pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def ticketq_version() -> str:
    try:
        return version("ticketq")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION = ticketq_version()
