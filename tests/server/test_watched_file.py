"""``WatchedFile``: the one way the service re-reads a file that may change under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from armada_jobservice.server.errors import ConfigError
from armada_jobservice.server.watched_file import WatchedFile


def rewrite(path: Path, text: str) -> None:
    """Replace the file's text and move its mtime on, as an editor or a rotation would."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_an_unreadable_file_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    """A missing file at start-up is a ConfigError that names the setting and the path."""
    with pytest.raises(ConfigError) as caught:
        WatchedFile(str(tmp_path / "missing"), str.strip, setting="armada_token_file")
    assert caught.value.setting == "armada_token_file"
    assert "missing" in caught.value.problem


def test_unusable_text_at_start_up_is_a_config_error(tmp_path: Path) -> None:
    """Text the parser refuses at start-up is a ConfigError too."""
    path = tmp_path / "n"
    path.write_text("not a number")
    with pytest.raises(ConfigError, match="cannot read"):
        WatchedFile(str(path), int, setting="n")


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    """After the file changes, get() returns the new contents."""
    path = tmp_path / "token"
    path.write_text("one\n")
    watched = WatchedFile(str(path), str.strip, setting="t")
    assert watched.get() == "one"
    rewrite(path, "two\n")
    assert watched.get() == "two"


def test_a_file_gone_later_keeps_the_last_good_value(tmp_path: Path) -> None:
    """A file that disappears or turns unusable after start-up keeps the previous value."""
    path = tmp_path / "n"
    path.write_text("1")
    watched = WatchedFile(str(path), int, setting="n")
    rewrite(path, "oops")
    assert watched.get() == 1
    path.unlink()
    assert watched.get() == 1
    path.write_text("3")
    assert watched.get() == 3


def test_recheck_limits_how_often_the_file_is_looked_at(tmp_path: Path) -> None:
    """With recheck_s, a change is seen only once that much time has passed on the clock."""
    now = [100.0]
    path = tmp_path / "token"
    path.write_text("one")
    watched = WatchedFile(str(path), str.strip, setting="t", recheck_s=1.0, clock=lambda: now[0])
    rewrite(path, "two")
    now[0] = 100.9
    assert watched.get() == "one"
    now[0] = 101.0
    assert watched.get() == "two"
