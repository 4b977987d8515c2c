"""`run`: one asyncio scenario of a real-node test, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

Result = TypeVar("Result")
DEADLINE_S = 120.0


def run(scenario: Coroutine[Any, Any, Result], deadline_s: float = DEADLINE_S) -> Result:
    """Run `scenario` to its end; TimeoutError if it takes longer than `deadline_s`."""

    async def bounded() -> Result:
        async with asyncio.timeout(deadline_s):
            return await scenario

    return asyncio.run(bounded())
