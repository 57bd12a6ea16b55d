"""What a slow stop writes to the log: where each unfinished task waits."""

from __future__ import annotations

import asyncio
import threading

from streams.app import describe_tasks


async def _inner_wait(event: asyncio.Event) -> None:
    await event.wait()


async def _outer_wait(event: asyncio.Event) -> None:
    await _inner_wait(event)


def test_describe_tasks_names_the_await_chain_from_another_thread() -> None:
    async def main() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(_outer_wait(event))
        await asyncio.sleep(0)
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.append(
            describe_tasks(loop)))
        reader.start()
        while reader.is_alive():
            await asyncio.sleep(0.001)
        event.set()
        await task
        return seen[0]

    loop = asyncio.new_event_loop()
    try:
        text = loop.run_until_complete(main())
    finally:
        loop.close()
    line = next(line for line in text.splitlines() if "_outer_wait" in line)
    # innermost first: the Event's wait, then ours, then the task's own coroutine
    assert line.index("_inner_wait") < line.index("_outer_wait")
    assert "test_stop_report.py:" in line and "locks.py:" in line
