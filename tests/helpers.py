"""Small waiting helpers: poll a condition instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    until: Callable[[T], bool] = bool,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> T:
    """Call *probe* until *until* holds for its result; fail with the last result at timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value: Any = probe()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value  # type: ignore[no-any-return]
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last value: {value!r}")
        await asyncio.sleep(interval)
