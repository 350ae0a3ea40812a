"""Scope files: who (a token, a certificate identity) may ask about which queues.

Shared by the server and the simulator (which never import each other), as
``_wire.py`` is shared by the server and the client.

One format serves the callers' tokens (``client_tokens_file``), the client
certificates' identities (``client_cert_scopes_file``) and the simulator's
per-caller permissions (``armada-sim --permissions-file``)::

    # comment lines and blank lines are skipped
    KEY                              every queue
    KEY PATTERN[,PATTERN...]         the queues matching any pattern
    KEY PATTERN[,...] name=NAME      (tokens only) the caller's name in logs

Columns are separated by spaces or tabs. A pattern is a queue name or a
shell-style wildcard matched by ``fnmatch.fnmatchcase``: case-sensitive,
``*`` matches any run of characters (``/`` and ``.`` included, there is no
path semantics), ``?`` one character, ``[abc]``/``[!abc]`` one of (not of) a
set. ``*`` alone is every queue. A line that breaks these rules is a
``ValueError`` naming the line number.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

#: Decisions remembered per entry; past this many distinct queues the memo
#: starts over, so a caller inventing queue names cannot grow memory unbounded.
MEMO_LIMIT = 10_000

_NAME = re.compile(r"[A-Za-z0-9._@/-]{1,128}")


def token_identity(token: str) -> str:
    """The non-secret name of an unnamed token: ``token:`` and 8 hex digits of its SHA-256."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def bearer_token(metadata: Any) -> str | None:
    """The token of an ``authorization: bearer <token>`` header, or None."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, rest = value.partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                return rest.strip()
    return None


@dataclass(slots=True, eq=False)
class Scope:
    """The queues one key may ask about; decisions are memoised per queue."""

    identity: str
    """Who this is in logs, limits and metrics: never a secret."""
    patterns: tuple[str, ...] | None
    """None: every queue."""
    secret: bytes = b""
    """For tokens: the token itself, compared in constant time after the lookup."""
    _memo: dict[str, bool] = field(default_factory=dict)

    def allows(self, queue: str) -> bool:
        """Whether *queue* matches one of the patterns."""
        if self.patterns is None:
            return True
        known = self._memo.get(queue)
        if known is not None:
            return known
        verdict = any(fnmatchcase(queue, p) for p in self.patterns)
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[queue] = verdict
        return verdict


def _patterns(text: str, where: str) -> tuple[str, ...] | None:
    patterns = tuple(text.split(","))
    if any(not p for p in patterns):
        raise ValueError(f"{where}: empty pattern in {text!r} (stray comma?)")
    return None if "*" in patterns else patterns


def _where(source: str, number: int) -> str:
    return f"{source}, line {number}" if source else f"line {number}"


def _lines(text: str) -> Iterable[tuple[int, list[str]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped.split()


class TokenScopes:
    """A parsed tokens file: token → ``Scope``, looked up by the token's SHA-256."""

    def __init__(self, entries: Mapping[bytes, Scope]) -> None:
        self._by_digest = dict(entries)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str) -> Scope | None:
        """The scope of *token*, or None if it is not listed.

        The dictionary is keyed by SHA-256 digests, so its timing says nothing
        usable about the token; the final comparison is constant-time.
        """
        given = token.encode()
        return self.by_digest(hashlib.sha256(given).digest(), given)

    def by_digest(self, digest: bytes, given: bytes) -> Scope | None:
        """``lookup`` for a caller that hashed the token (*given*, encoded) already."""
        scope = self._by_digest.get(digest)
        if scope is None or not hmac.compare_digest(given, scope.secret):
            return None
        return scope


def parse_token_scopes(text: str, source: str = "") -> TokenScopes:
    """Parse a tokens file (``TOKEN [PATTERNS] [name=NAME]``); ValueError names the line."""
    entries: dict[bytes, Scope] = {}
    names: dict[str, int] = {}
    for number, fields in _lines(text):
        where = _where(source, number)
        token, rest = fields[0], fields[1:]
        name = None
        patterns_text = None
        for column in rest:
            if column.startswith("name="):
                if name is not None:
                    raise ValueError(f"{where}: more than one name=")
                name = column[len("name=") :]
                if not _NAME.fullmatch(name):
                    raise ValueError(
                        f"{where}: a name is 1-128 of A-Z a-z 0-9 . _ @ / - (got {name!r})"
                    )
            elif patterns_text is None:
                patterns_text = column
            else:
                # Never echo the line: its first column is a secret.
                raise ValueError(
                    f"{where}: expected TOKEN [PATTERN[,PATTERN...]] [name=NAME], "
                    f"got {len(fields)} columns (separate patterns by commas, no spaces)"
                )
        digest = hashlib.sha256(token.encode()).digest()
        if digest in entries:
            raise ValueError(f"{where}: the same token is listed twice")
        if name is not None:
            if name in names:
                raise ValueError(f"{where}: name {name!r} is used on line {names[name]} too")
            names[name] = number
        patterns = None if patterns_text is None else _patterns(patterns_text, where)
        identity = name if name is not None else token_identity(token)
        entries[digest] = Scope(identity, patterns, secret=token.encode())
    return TokenScopes(entries)


class IdentityScopes:
    """A parsed certificate scopes file: identity (CN or SAN) → ``Scope``."""

    def __init__(self, entries: Mapping[str, Scope]) -> None:
        self._by_identity = dict(entries)

    def __len__(self) -> int:
        return len(self._by_identity)

    def lookup(self, names: Iterable[str]) -> Scope | None:
        """The scope of the first of *names* (CN, then SANs) that the file lists."""
        for name in names:
            scope = self._by_identity.get(name)
            if scope is not None:
                return scope
        return None


def parse_identity_scopes(text: str, source: str = "") -> IdentityScopes:
    """Parse an identity scopes file (``IDENTITY [PATTERNS]``); ValueError names the line."""
    entries: dict[str, Scope] = {}
    for number, fields in _lines(text):
        where = _where(source, number)
        if len(fields) > 2:
            raise ValueError(
                f"{where}: expected IDENTITY [PATTERN[,PATTERN...]], got {len(fields)} columns"
            )
        identity = fields[0]
        if identity in entries:
            raise ValueError(f"{where}: {identity!r} is listed twice")
        patterns = _patterns(fields[1], where) if len(fields) == 2 else None
        entries[identity] = Scope("cert:" + identity, patterns)
    return IdentityScopes(entries)
