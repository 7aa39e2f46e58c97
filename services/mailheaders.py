"""The email package's policy for our messages: every header we write, written safely.

Names, subjects and identifiers come from buyers and organizers; these classes write them as text
(RFC 2047 where needed) and never let the email package re-read them as header syntax."""

from __future__ import annotations

import email.policy
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from typing import Any


class _Text(UnstructuredHeader, BaseHeader):
    """A header value taken literally and written by the email package's `Header` (RFC 2047).

    policy.default would decode anything in the value that looks like an encoded word (an event
    named "=?utf-8?q?=0D=0ABcc:_x@evil?=" became a raw Bcc line on Python 3.11), and its folder
    drops the space between two encoded words it puts on separate lines (CPython gh-144156)."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = None  # fold() below never reads it
        kwds["decoded"] = value

    def fold(self, *, policy: email.policy.Policy) -> str:
        # Encoded as a whole if anything in it could be read as non-ASCII or as an encoded word.
        charset = "us-ascii" if self.isascii() and "=?" not in self else "utf-8"
        value = Header(str(self), charset, header_name=self.name)
        folded = value.encode(linesep=policy.linesep, maxlinelen=policy.max_line_length)
        return f"{self.name}: {folded}{policy.linesep}"


class _UniqueText(_Text):
    max_count = 1


class _Mailbox(_UniqueText):
    """From and Reply-To, set as an `Address`: its display name written by `Header` as a whole, then the
    address. The registry's AddressHeader re-parses the name it folds, so a name like
    "=?utf-8?q?a=0D=0ABcc:_x@evil?=" became a line break and a Bcc header (the flaw _Text avoids)."""

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        address = value if isinstance(value, Address) else Address(addr_spec=str(value))
        kwds.update(parse_tree=None, decoded=str(address), address=address)

    def init(self, *args: Any, **kw: Any) -> None:
        self._address: Address = kw.pop("address")
        super().init(*args, **kw)

    def fold(self, *, policy: email.policy.Policy) -> str:
        name, spec = self._address.display_name, self._address.addr_spec
        if not name.isascii() or "=?" in name:
            value = Header(name, "utf-8", header_name=self.name)
            value.append(f"<{spec}>", "us-ascii")
        else:  # plain text: Address quotes a name with specials ("Eve, Bcc" <…>)
            value = Header(str(self._address), "us-ascii", header_name=self.name)
        folded = value.encode(linesep=policy.linesep, maxlinelen=policy.max_line_length)
        return f"{self.name}: {folded}{policy.linesep}"


_HEADERS = HeaderRegistry(default_class=_Text)  # X-Order-Identifier, X-Email-Kind
# The Message-ID too, so it goes out exactly as recorded: the standard class cuts short one it cannot parse.
for _name in ("subject", "message-id"):
    _HEADERS.map_to_type(_name, _UniqueText)
for _name in ("from", "reply-to"):
    _HEADERS.map_to_type(_name, _Mailbox)

# CRLF line ends and every part 7-bit clean: we do not ask the server for 8BITMIME, so UTF-8 text
# goes out quoted-printable or base64, and non-ASCII header text as RFC 2047 encoded words.
POLICY = email.policy.SMTP.clone(cte_type="7bit", header_factory=_HEADERS)
