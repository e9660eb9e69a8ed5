"""Starting a stream only once its first chunk is known, so early errors get a real status code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def primed(source: AsyncIterator[T]) -> AsyncIterator[T]:
    """Await the first item now (raising any error here), then hand back the whole stream."""
    iterator = aiter(source)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        return _empty()
    return _prepend(first, iterator)


async def _empty() -> AsyncIterator[T]:  # type: ignore[misc]
    return
    yield


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
