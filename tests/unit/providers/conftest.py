"""Shared fixtures of the provider tests."""

from collections.abc import AsyncIterator

import pytest

from gateway.providers.openai_compatible import OpenAICompatibleProvider


@pytest.fixture
async def provider() -> AsyncIterator[OpenAICompatibleProvider]:
    p = OpenAICompatibleProvider()
    yield p
    await p.aclose()
