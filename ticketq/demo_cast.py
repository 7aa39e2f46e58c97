"""The demo's cast and its client: the people, the seller it prints, the HTTP calls and tokens."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx

Email = tuple[str, str, str]  # (order identifier, kind, recipient)
OWNER, CORA = ("Olga Owner", "olga@example.com"), ("Cora Coorganizer", "cora@example.com")
# Attendees named in other scripts: their tickets show the packaged Noto fonts at work.
BEA, HANAKO = ("Bea Buyer", "bea@example.com"), ("山田花子", "hanako@example.com")
MOHAMMED = ("محمد عبد الله", "mohammed@example.com")
CONFIRM_KINDS = ("confirmation-buyer", "confirmation-attendee")
# What the invoices print about the seller (an example VAT ID with a valid check digit, from python-stdnum).
SELLER = {"seller_name": "ticketq Demo Events GmbH", "seller_address": "Musterstraße 1\n10115 Berlin",
          "seller_vat_id": "DE136695976", "tax_rate": "19", "prices_include_tax": True,
          "bank_details": "ticketq Demo Events GmbH\nIBAN DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX",
          "cheque_details": "Payable to ticketq Demo Events GmbH, Musterstraße 1, 10115 Berlin",
          "contact_email": "olga@example.com"}


class DemoFailed(RuntimeError):
    """Something the demo expected did not happen."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class DemoOrder:
    label: str
    identifier: str
    expect: str
    path: list[str] = field(default_factory=list)
    people: list[tuple[str, str]] = field(default_factory=list)  # the attendees, one per ticket

    def saw(self, status: str) -> None:
        if not self.path or self.path[-1] != status:
            self.path.append(status)


@dataclass
class Api:
    client: httpx.Client

    def call(self, method: str, path: str, token: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
        response = self.client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        if response.status_code not in expect:
            raise DemoFailed(f"{method} {path} answered {response.status_code}, expected {expect}: "
                             f"{response.text[:400]}")
        return response.json() if response.headers.get("content-type", "").startswith("application/json") else response


def issue_token(env: dict[str, str], person: tuple[str, str]) -> str:
    """Through the documented command, which prints the token alone on its last line."""
    result = subprocess.run([sys.executable, "-m", "ticketq.cli", "users", "create", person[1], "--name", person[0]],
                            env=env, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise DemoFailed(f"ticketq users create {person[1]} failed: {result.stderr[-500:]}")
    return result.stdout.strip().splitlines()[-1]
