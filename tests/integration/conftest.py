from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.store_harness import Store, running_store


@pytest.fixture
async def store(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Store]:
    async with running_store(tmp_path, aiohttp_client) as harness:
        yield harness
