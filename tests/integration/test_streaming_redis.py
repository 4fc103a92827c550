"""The streaming text path on the real Redis: the worker's publisher to the API's feed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import Redis

from api.streaming import LiveText, SegmentFeed
from core.notify import TextUpdate
from worker.whole import TextPublisher

pytestmark = pytest.mark.integration


class Ctx:
    def __init__(self, url: str) -> None:
        self.client = Redis.from_url(url)

    def redis_client(self) -> Any:
        return self.client


def test_published_text_reaches_a_feed_opened_before(redis_url: str) -> None:
    texts = ["Hello there,", "Hello there, general Kenobi.", "Hello there, general Kenobi."]

    async def main() -> list[TextUpdate]:
        feed = await SegmentFeed.open(redis_url, "job42")
        assert feed is not None
        try:
            publish = TextPublisher(Ctx(redis_url), "job42")  # type: ignore[arg-type]
            other = TextPublisher(Ctx(redis_url), "another-job")  # type: ignore[arg-type]
            for i, text in enumerate(texts):
                publish(float(i), text)
                other(float(i), "not this one")
            updates: list[TextUpdate] = []
            for _ in range(20):
                updates += await feed.get(0.1)
                if len(updates) >= 2:
                    break
            return updates
        finally:
            await feed.close()

    updates = asyncio.run(main())
    assert updates == [TextUpdate(0, "Hello there,"), TextUpdate(12, " general Kenobi.")]
    live = LiveText()
    for u in updates:
        live.apply(u)
    assert live.take() == texts[-1]


def test_no_redis_or_redis_down_means_no_feed() -> None:
    async def main() -> tuple[Any, Any]:
        return (
            await SegmentFeed.open(None, "j"),
            await SegmentFeed.open("redis://127.0.0.1:1/0", "j"),
        )

    assert asyncio.run(main()) == (None, None)
