"""Caching that survives stampedes and never serves what it was told to forget (shared/cache/store.py).

    from shared.cache import get_or_compute, invalidate

    user = await get_or_compute(f"user:{id}", lambda: load_user(id), ttl_s=60, stale_ttl_s=300, tags=[f"org:{org}"])
    await invalidate(tags=[f"org:{org}"])

The functions here use one `Cache` per process, namespace "default", configured from the environment;
make a `Cache(namespace, redis=..., clock=...)` of your own for another namespace or in tests.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from shared.cache.store import Cache, Cached, Compute, Computed

__all__ = ["Cache", "Cached", "Computed", "default_cache", "delete", "get_or_compute", "invalidate", "set"]


@functools.cache
def default_cache() -> Cache:
    return Cache()


async def get_or_compute(
    key: str, compute: Compute, ttl_s: float, stale_ttl_s: float = 0.0, tags: Sequence[str] = (), beta: float = 1.0
) -> Any:
    """The cached value of `key`, computing it (once, however many callers ask at once) when it is missing
    or due: see `Cache.get_or_compute`."""
    return await default_cache().get_or_compute(key, compute, ttl_s, stale_ttl_s, tags, beta)


async def set(key: str, value: Any, ttl_s: float, stale_ttl_s: float = 0.0, tags: Sequence[str] = ()) -> None:
    """Write-through: store `value` now; an earlier recompute still in flight can no longer overwrite it."""
    await default_cache().set(key, value, ttl_s, stale_ttl_s, tags)


async def delete(key: str) -> None:
    await default_cache().delete(key)


async def invalidate(*, keys: Iterable[str] = (), tags: Iterable[str] = ()) -> int:
    """Forget keys and every key carrying one of `tags`, in one round trip."""
    return await default_cache().invalidate(keys=keys, tags=tags)
