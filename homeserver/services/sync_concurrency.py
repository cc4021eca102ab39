"""Running the independent parts of one /sync response at the same time (C-S "Syncing"):
the top-level sections, and the rooms of a response, whose queries then overlap instead of
queueing one after another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, Final

# Rooms of one response built at the same time (each takes a pooled connection per query).
ROOM_CONCURRENCY: Final = 8


async def concurrently(*awaitables: Awaitable[Any], parallel: bool = True) -> list[Any]:
    """Await independent parts at once; if one fails, the others are cancelled (not left
    running) and its exception propagates unchanged. Not `parallel` (an incremental sync,
    whose parts mostly come from memory): one after another, without a task each."""
    if not parallel:
        results = []
        pending = list(awaitables)
        try:
            while pending:
                results.append(await pending.pop(0))
        finally:
            for left in pending:  # not started: close them quietly
                if isinstance(left, Coroutine):
                    left.close()
        return results
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def gather_limited(
    coroutines: Sequence[Coroutine[Any, Any, dict[str, Any]]], limit: int = ROOM_CONCURRENCY
) -> list[dict[str, Any]]:
    """Run the per-room work of one response concurrently (their queries overlap instead of
    queueing one after another), at most `limit` at a time; results in the given order."""
    if len(coroutines) <= 1:
        return [await c for c in coroutines]
    semaphore = asyncio.Semaphore(limit)

    async def bounded(c: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
        async with semaphore:
            return await c

    return list(await asyncio.gather(*(bounded(c) for c in coroutines)))
