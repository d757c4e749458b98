"""Probes start a few at a time, so the answers of those already started are read while the rest
start (observe/probe.py ``_paced``): thousands of synchronous starts in one turn of the loop made the
first probes time out with their SYN-ACK unread."""

from __future__ import annotations

import asyncio

from acknet.observe import probe


def test_the_loop_turns_while_jobs_start() -> None:
    async def run() -> list[int]:
        turns = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal turns
            while not stop.is_set():
                turns += 1
                await asyncio.sleep(0)

        async def job() -> int:
            return turns  # the turns the loop made before this job started

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        count = 4 * probe._STARTS_PER_TURN
        seen = await probe._paced(job() for _ in range(count))
        stop.set()
        await ticking
        return [int(s) for s in seen]

    seen = asyncio.run(run())
    # Each batch of starts sees the loop a turn further on than the batch before it.
    assert len(set(seen)) >= 4
    assert seen == sorted(seen)


def test_results_keep_the_order_of_the_jobs() -> None:
    async def job(n: int) -> int:
        await asyncio.sleep(0.001 * (n % 3))
        return n

    async def run() -> list[int]:
        return [int(r) for r in await probe._paced(job(n) for n in range(300))]

    assert asyncio.run(run()) == list(range(300))
