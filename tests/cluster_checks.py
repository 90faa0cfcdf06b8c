"""Checks shared by the cluster security tests: who listens where, who may connect."""

from __future__ import annotations

import asyncio

import psutil
from distributed import Client
from distributed.security import Security


def listening() -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket this process listens on."""
    return {(s.laddr.ip, s.laddr.port) for s in psutil.Process().net_connections(kind="inet")
            if s.status == psutil.CONN_LISTEN}


def refused(address: str, security: Security | None) -> bool:
    """Whether a client with ``security`` (``None``: no credentials) fails to connect and run a task.

    The client runs on an event loop of this thread (``asynchronous=True``), not on a loop
    thread of its own, so a refused connection leaves nothing behind for the next one.
    """
    async def connect_and_run() -> None:
        async with Client(address, security=security, timeout="3s", asynchronous=True, set_as_default=False) as c:
            await c.submit(sum, [1, 2])

    try:
        asyncio.run(asyncio.wait_for(connect_and_run(), 10))
    except (OSError, TimeoutError, ValueError, TypeError):
        return True
    return False
