"""The inference slots the AudioProcessor hands out: at most N inferences at a time, and when all are
taken, the waiting ones served by priority (the answers admitted streams are owed first), then in the
order they came."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from enum import IntEnum


class Priority(IntEnum):
    FINAL = 0  # an answer an admitted stream is owed (a final answer, a segment, a Realtime turn)
    FIRST = 1  # a stream's first partial answer: it waits, after the finals (Session.identify)
    REQUEST = 2  # a new request (POST /detect, /v1, once mode): may be refused when too many wait


class Slots:
    def __init__(self, count: int) -> None:
        self.free = count
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for one (a partial answer never waits)."""
        if self.free and not self.waiting():
            self.free -= 1
            return True
        return False

    async def take(self, priority: Priority) -> None:
        if self.try_take():
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (int(priority), next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over as the waiter was cancelled: pass it on
            else:
                future.cancel()  # left in the heap, skipped by release
            raise

    def release(self) -> None:
        """Hand the slot to the first waiter by priority, or free it."""
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self.free += 1

    def waiting(self, priority: Priority | None = None) -> int:
        """Callers waiting for a slot (of this priority)."""
        return sum(1 for p, _, future in self._waiting
                   if not future.done() and (priority is None or p == priority))

    @property
    def saturated(self) -> bool:
        return self.free == 0 or self.waiting() > 0
