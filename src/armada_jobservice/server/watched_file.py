"""A file the service re-reads when it changes: Armada's token, the callers' tokens.

A ``WatchedFile`` parses its file once at start-up (where an unreadable or
unusable file stops the service, naming the setting) and again whenever the
file's modification time or size changes. A file that cannot be read later
(being rewritten, briefly gone, or holding a mistake) keeps the last good
value and logs one warning per bad version of the file, so a credentials
rotation never leaves the service without one. Checks can be limited to one
per ``recheck_s`` for callers on a hot path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from armada_jobservice.server.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """The parsed contents of a file, re-parsed when the file changes; thread-safe."""

    def __init__(
        self,
        path: str,
        parse: Callable[[str], T],
        *,
        setting: str,
        recheck_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read and parse *path* now; raise ``ConfigError`` naming *setting* if that fails.

        *parse* turns the file's text into the value, raising ``ValueError``
        for text that cannot be used.
        """
        self.path = path
        self.setting = setting
        self._parse = parse
        self._recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        #: The version (or the error) last warned about: warn once, not every check.
        self._warned: object = None
        self._checked = clock()
        try:
            self._value = self._read()
        except (OSError, ValueError) as exc:
            raise ConfigError(setting, f"cannot read {path}: {exc}") from exc

    def _read(self) -> T:
        st = os.stat(self.path)
        with open(self.path) as fh:
            value = self._parse(fh.read())
        self._stamp = (st.st_mtime_ns, st.st_size)
        return value

    def refresh(self) -> T:
        """The current value, looking at the file now whatever ``recheck_s`` says."""
        self._checked = self._clock() - self._recheck_s
        return self.get()

    def get(self) -> T:
        """The current value: re-read first if the file changed (and a check is due)."""
        if self._recheck_s:
            now = self._clock()
            if now - self._checked < self._recheck_s:
                return self._value
            self._checked = now
        with self._lock:
            bad: object = None
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp != self._stamp and stamp != self._warned:
                    bad = stamp
                    self._value = self._read()
                    self._warned = None
                    log.info("re-read %s (%s)", self.path, self.setting)
            except (OSError, ValueError) as exc:
                bad = bad if bad is not None else str(exc)
                if bad != self._warned:
                    self._warned = bad
                    log.warning(
                        "cannot use %s (%s): %s; keeping the previous value",
                        self.path,
                        self.setting,
                        exc,
                    )
            return self._value
