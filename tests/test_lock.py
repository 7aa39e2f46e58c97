"""The locks agree with pyproject.toml, and this environment runs what the test lock pins."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$", re.M)


def pins(lock: str) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker) of every pinned line of a lock."""
    found = {}
    for name, pinned, marker in PIN.findall((ROOT / lock).read_text()):
        found[canonicalize_name(name.split("[")[0])] = (pinned, marker or None)
    return found


def project() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"runtime": data["dependencies"], "test": data["optional-dependencies"]["test"]}


def applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate()


@pytest.mark.parametrize(("lock", "groups"), [("requirements.lock", ["runtime"]),
                                               ("requirements-test.lock", ["runtime", "test"])])
def test_every_requirement_of_pyproject_is_pinned_within_its_range(lock: str, groups: list[str]) -> None:
    locked = pins(lock)
    wrong = []
    for group in groups:
        for line in project()[group]:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate():
                continue
            pinned = locked.get(canonicalize_name(req.name))
            if pinned is None or not req.specifier.contains(pinned[0], prereleases=True):
                wrong.append(f"{line} -> {pinned[0] if pinned else 'not in the lock'}")
    assert wrong == [], f"pyproject.toml changed without `make lock`: {wrong}"


def test_the_test_lock_pins_the_runtime_lock_unchanged() -> None:
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert {name: test.get(name, ("missing", None))[0] for name in runtime} == \
        {name: pinned for name, (pinned, _) in runtime.items()}


def test_this_environment_runs_the_locked_versions() -> None:
    differ = {}
    for name, (pinned, marker) in pins("requirements-test.lock").items():
        if not applies(marker):
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned:
            differ[name] = f"{installed} (lock: {pinned})"
    assert differ == {}, "run `make test` (it installs from the lock) or `make lock`"
