"""Cache-aside that survives stampedes and never serves what it was told to forget.

    cache = Cache("profiles")
    profile = await cache.get_or_compute(f"user:{uid}", load_profile, ttl_s=60, stale_ttl_s=300,
                                         tags=(f"user:{uid}",))
    await cache.set(f"user:{uid}", profile, ttl_s=60)            # write-through, for writers
    await cache.delete(f"user:{uid}")
    await cache.invalidate(tags=("user:42",))                    # one round trip, any number of keys

Who waits, precisely (no background task: a frozen Lambda never finishes one):
- fresh hit: the value, one round trip;
- stale hit (within `stale_ttl_s` after `ttl_s`): the one caller that takes the refresh lease recomputes
  inside its own request and answers the new value; every other caller gets the stale value at once;
- XFetch: while fresh, a caller whose random draw says "early" takes the lease and refreshes the same
  way, so a hot key is replaced before it expires and its readers never see a miss;
- miss: the lease winner computes; the others poll (jittered, up to `wait_s`) for its result, and
  compute themselves when it does not come rather than hang.
A compute that fails falls back to the last value while its stale-if-error window lasts.

Invalidation cannot resurrect old data: a key's generation is bumped by `delete`, `set` and
`invalidate(keys=...)`, and STORE writes a recompute's result only if the generation is the one its
lookup saw, in the same script. A tag's invalidation writes the tag's stamp (script time, µs); an entry
whose computation started at or before a stamp of one of its tags is invalid when read. The stamps are
read in the lookup's own pipeline (the tags passed in, and those this process last saw on the key), so a
tagged hit is still one round trip.

`None` from `compute` means "not found" and is cached for `negative_ttl_s`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from upstash_redis.errors import UpstashError

from shared import keys as keyspace
from shared.cache.entry import Found, encode
from shared.cache.script import FORGET, LOOKUP, STAMP, STORE
from shared.clock import Clock, RedisClock
from shared.redis import RedisProvider, get_redis
from shared.scripts import Script

State = Literal["hit", "stale", "miss"]
Compute = Callable[[], Awaitable[Any]]
Sleep = Callable[[float], Awaitable[None]]
MAX_KEY_CHARS = 1024
_KNOWN_TAGS_MAX = 10_000  # keys whose tags this process remembers, so a hit reads their stamps at once


@dataclass(frozen=True, slots=True, kw_only=True)
class Computed:
    """What `compute` may return instead of a bare value, to give this result its own lifetimes and
    tags (the caching proxy takes them from the origin's Cache-Control and Cache-Tag)."""

    value: Any
    ttl_s: float
    stale_ttl_s: float = 0.0
    stale_if_error_s: float = 0.0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cached:
    value: Any
    state: State  # hit: fresh from the cache; stale: an older value; miss: computed by this call
    age_s: float  # since the value was stored (0 for a value computed by this call)
    now_ms: int  # the script's time of the decision
    refresh_failed: bool = False  # stale because the recompute failed (stale-if-error)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    ttl_s: float
    stale_ttl_s: float
    stale_if_error_s: float
    tags: tuple[str, ...]
    beta: float


class Cache:
    """One namespace of cached values. `clock` says whose time freshness follows (Redis TIME by
    default); `random` draws XFetch's u and the polling jitter; `sleep` is what pollers wait with."""

    def __init__(
        self,
        namespace: str = "default",
        *,
        redis: RedisProvider = get_redis,
        clock: Clock | None = None,
        random: Callable[[], float] = random.random,
        sleep: Sleep = asyncio.sleep,
        lease_ttl_s: float = 10.0,
        wait_s: float = 2.0,
        negative_ttl_s: float = 30.0,
        max_value_bytes: int = 1 << 20,
    ) -> None:
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValueError("a cache namespace is non-empty and has no braces")
        self.namespace = namespace
        self._redis = redis
        self._clock = clock or RedisClock()
        self._random = random
        self._sleep = sleep
        self.lease_ttl_s, self.wait_s = lease_ttl_s, wait_s
        self.negative_ttl_s, self.max_value_bytes = negative_ttl_s, max_value_bytes
        self._pending: Counter[str] = Counter()  # counters not yet sent (they ride the next pipeline)
        self._known_tags: dict[str, tuple[str, ...]] = {}

    async def get_or_compute(
        self,
        key: str,
        compute: Compute,
        ttl_s: float,
        stale_ttl_s: float = 0.0,
        tags: Sequence[str] = (),
        beta: float = 1.0,
    ) -> Any:
        return (await self.fetch(key, compute, ttl_s, stale_ttl_s, tags, beta)).value

    async def fetch(
        self,
        key: str,
        compute: Compute,
        ttl_s: float,
        stale_ttl_s: float = 0.0,
        tags: Sequence[str] = (),
        beta: float = 1.0,
        stale_if_error_s: float = 0.0,
    ) -> Cached:
        """`get_or_compute` with what happened: the state, the value's age, the decision's time."""
        _check_key(key)
        plan = _Plan(
            ttl_s=ttl_s, stale_ttl_s=stale_ttl_s, stale_if_error_s=stale_if_error_s, tags=tuple(tags), beta=beta
        )
        token = uuid.uuid4().hex
        found = await self._lookup(key, token, plan)
        if found.envelope is not None and found.state != "miss":
            if not found.won:
                self._pending["hits" if found.state in ("fresh", "early") else "stale"] += 1
                return _cached(found, "hit" if found.state in ("fresh", "early") else "stale")
            self._pending["refreshes"] += 1
            return await self._compute_and_store(key, compute, plan, found, token)
        if not found.won:
            found = await self._wait(key, token, plan, found)
            if found.envelope is not None and found.state != "miss" and not found.won:
                state: State = "hit" if found.state in ("fresh", "early") else "stale"
                self._pending["hits" if state == "hit" else "stale"] += 1
                return _cached(found, state)
        self._pending["misses"] += 1
        return await self._compute_and_store(key, compute, plan, found, token)

    async def set(self, key: str, value: Any, ttl_s: float, stale_ttl_s: float = 0.0, tags: Sequence[str] = ()) -> None:
        """Write-through: store `value` now and bump the key's generation, so a recompute that started
        earlier can no longer overwrite it."""
        _check_key(key)
        plan = _Plan(ttl_s=ttl_s, stale_ttl_s=stale_ttl_s, stale_if_error_s=0.0, tags=tuple(tags), beta=0.0)
        await self._store(key, "", "set", "", value, plan, delta_ms=0, started_us="")

    async def delete(self, key: str) -> None:
        await self.invalidate(keys=(key,))

    async def invalidate(self, *, keys: Iterable[str] = (), tags: Iterable[str] = ()) -> int:
        """Forget keys (entry deleted, generation bumped) and tags (stamped now): one round trip for
        any number of them. Returns how many keys and tags were invalidated."""
        commands: list[tuple[Script, list[str], list[str | int | float]]] = []
        generation_ttl_ms = _ms(keyspace.CACHE_GENERATION_TTL_S)
        for key in dict.fromkeys(keys):
            _check_key(key)
            ks = [keyspace.cache_entry(self.namespace, key), keyspace.cache_generation(self.namespace, key)]
            commands.append((FORGET, ks, [generation_ttl_ms]))
        now = self._now_arg()
        for tag in dict.fromkeys(tags):
            _check_key(tag)
            stamp_key = keyspace.cache_tag_stamp(self.namespace, tag)
            commands.append((STAMP, [stamp_key], [now, _ms(keyspace.CACHE_TAG_TTL_S)]))
        if commands:
            self._pending["invalidations"] += len(commands)
            await self._run(commands, [])
        return len(commands)

    async def stats(self) -> dict[str, int]:
        """The namespace's counters over every process (this one's pending counts sent first)."""
        replies = await self._run([], [["HGETALL", keyspace.cache_stats(self.namespace)]])
        counters = replies[-1] or {}  # the SDK turns HGETALL's flat list into a dict
        return {str(name): int(n) for name, n in dict(counters).items()}

    def record(self, counter: str, n: int = 1) -> None:
        """Count something of the caller's own (the proxy's origin calls) with the cache's counters."""
        self._pending[counter] += n

    # -- the round trips -------------------------------------------------------------------------

    async def _lookup(self, key: str, token: str, plan: _Plan, ignore: str = "") -> Found:
        tags = tuple(dict.fromkeys((*plan.tags, *self._known_tags.get(key, ()))))
        args: list[str | int | float] = [
            self._now_arg(),
            token,
            _ms(self.lease_ttl_s),
            ignore,
            plan.beta,
            max(1e-12, 1.0 - self._random()),  # uniform in (0, 1]: ln(0) is undefined
        ]
        stamp_reads = [["GET", keyspace.cache_tag_stamp(self.namespace, tag)] for tag in tags]
        replies = await self._run([(LOOKUP, self._keys(key), args)], stamp_reads)
        found = Found.parse(replies[0])
        if ignore and found.write_id == ignore:  # the entry the caller found invalid: absent to it
            return replace(found, envelope=None)
        stamps = {tag: int(reply or 0) for tag, reply in zip(tags, replies[1:], strict=False)}
        if not found.write_id:  # no entry at all
            return found
        if found.envelope is not None and (
            self._valid(key, found, stamps) or await self._valid_after_reading_more(key, found, stamps)
        ):
            return found
        # Unreadable (another format version) or invalidated by a tag: absent, and the lease tried.
        return await self._lookup(key, token, plan, ignore=found.write_id)

    def _valid(self, key: str, found: Found, stamps: dict[str, int]) -> bool:
        assert found.envelope is not None
        self._remember_tags(key, found.envelope.tags)
        missing = [tag for tag in found.envelope.tags if tag not in stamps]
        return not missing and all(stamps[tag] < found.started_us for tag in found.envelope.tags)

    async def _valid_after_reading_more(self, key: str, found: Found, stamps: dict[str, int]) -> bool:
        assert found.envelope is not None
        missing = [tag for tag in found.envelope.tags if tag not in stamps]
        if missing:  # tags this process had not seen on the key yet: one more round trip
            replies = await self._run([], [["GET", keyspace.cache_tag_stamp(self.namespace, t)] for t in missing])
            stamps = stamps | {tag: int(reply or 0) for tag, reply in zip(missing, replies, strict=True)}
        return all(stamps[tag] < found.started_us for tag in found.envelope.tags)

    async def _wait(self, key: str, token: str, plan: _Plan, found: Found) -> Found:
        """Poll for the lease winner's result, jittered, for at most `wait_s`; whatever comes back last
        (a value, the lease, or neither) decides what the caller does next."""
        waited_s, interval_s = 0.0, 0.02
        while waited_s < self.wait_s:
            pause = min(interval_s * (0.5 + self._random()), self.wait_s - waited_s)
            await self._sleep(pause)
            waited_s += pause
            interval_s = min(interval_s * 1.5, 0.2)
            found = await self._lookup(key, token, plan)
            if found.won or (found.envelope is not None and found.state != "miss"):
                return found
        return found

    async def _compute_and_store(self, key: str, compute: Compute, plan: _Plan, found: Found, token: str) -> Cached:
        started = time.monotonic()
        try:
            result = await compute()
        except Exception:
            if found.won:
                await self._store(key, token, "compute", found.generation, None, plan, delta_ms=0, release_only=True)
            if found.servable_on_error:
                self._pending["stale_on_error"] += 1
                return _cached(found, "hit" if found.state == "early" else "stale", refresh_failed=True)
            raise
        self._pending["computes"] += 1
        delta_ms = round((time.monotonic() - started) * 1000)
        if isinstance(result, Computed):
            plan = _Plan(
                ttl_s=result.ttl_s,
                stale_ttl_s=result.stale_ttl_s,
                stale_if_error_s=result.stale_if_error_s,
                tags=tuple(dict.fromkeys((*plan.tags, *result.tags))),
                beta=plan.beta,
            )
            result = result.value
        if result is None:
            self._pending["negative"] += 1
            plan = _Plan(ttl_s=self.negative_ttl_s, stale_ttl_s=0, stale_if_error_s=0, tags=plan.tags, beta=0)
        started_us = str(found.now_us)  # when its inputs were read: the lookup's time
        now_ms = await self._store(key, token, "compute", found.generation, result, plan, delta_ms, started_us)
        return Cached(value=result, state="miss", age_s=0.0, now_ms=now_ms)

    async def _store(
        self,
        key: str,
        token: str,
        mode: Literal["compute", "set"],
        generation: str,
        value: Any,
        plan: _Plan,
        delta_ms: int,
        started_us: str = "",
        release_only: bool = False,
    ) -> int:
        payload = "" if release_only else encode(value, plan.tags)
        if len(payload) > self.max_value_bytes:
            self._pending["too_large"] += 1
            payload = ""
        fresh_s, stale_s, error_s = _bounded(plan)
        args: list[str | int | float] = [
            self._now_arg(),
            token,
            mode,
            generation,
            payload,
            _ms(fresh_s),
            _ms(stale_s),
            _ms(error_s),
            delta_ms,
            started_us,
            uuid.uuid4().hex,
            _ms(keyspace.CACHE_GENERATION_TTL_S),
        ]
        replies = await self._run([(STORE, self._keys(key), args)], [])
        stored, now_ms = (int(v) for v in replies[0])
        if payload:
            self._remember_tags(key, plan.tags)
            self._pending["stores" if stored else "refused_stores"] += 1
        return now_ms

    async def _run(
        self, scripts: list[tuple[Script, list[str], list[str | int | float]]], commands: list[list[Any]]
    ) -> list[Any]:
        """One pipeline: this process's pending counters, the scripts (EVALSHA), then the plain commands.
        On NOSCRIPT (Redis restarted, or a new script) the scripts go again as EVAL, counters left out."""
        pending = self._take_pending()
        try:
            return await self._pipeline(scripts, commands, pending, use_sha=True)
        except UpstashError as exc:
            if "NOSCRIPT" not in str(exc):
                raise
            return await self._pipeline(scripts, commands, [], use_sha=False)

    async def _pipeline(
        self,
        scripts: list[tuple[Script, list[str], list[str | int | float]]],
        commands: list[list[Any]],
        counters: list[list[Any]],
        *,
        use_sha: bool,
    ) -> list[Any]:
        pipeline = self._redis().pipeline()
        for command in counters:  # first, so that a read of the counters in `commands` includes them
            pipeline.execute(command)
        for script, script_keys, args in scripts:
            head = ["EVALSHA", script.sha1] if use_sha else ["EVAL", script.source]
            pipeline.execute([*head, len(script_keys), *script_keys, *args])
        for command in commands:
            pipeline.execute(command)
        replies = await pipeline.exec()
        return replies[len(counters) :]

    def _take_pending(self) -> list[list[Any]]:
        if not self._pending:
            return []
        stats_key = keyspace.cache_stats(self.namespace)
        commands: list[list[Any]] = [["HINCRBY", stats_key, name, n] for name, n in self._pending.items()]
        commands.append(["EXPIRE", stats_key, keyspace.CACHE_STATS_TTL_S])
        self._pending.clear()
        return commands

    def _keys(self, key: str) -> list[str]:
        ns = self.namespace
        return [keyspace.cache_entry(ns, key), keyspace.cache_lease(ns, key), keyspace.cache_generation(ns, key)]

    def _now_arg(self) -> str | int:
        now = self._clock.script_now_ms()
        return "" if now is None else now

    def _remember_tags(self, key: str, tags: tuple[str, ...]) -> None:
        if not tags:
            self._known_tags.pop(key, None)
            return
        if len(self._known_tags) >= _KNOWN_TAGS_MAX and key not in self._known_tags:
            self._known_tags.pop(next(iter(self._known_tags)))
        self._known_tags[key] = tags


def _cached(found: Found, state: State, *, refresh_failed: bool = False) -> Cached:
    assert found.envelope is not None
    value = found.envelope.value
    return Cached(value=value, state=state, age_s=found.age_s, now_ms=found.now_ms, refresh_failed=refresh_failed)


def _bounded(plan: _Plan) -> tuple[float, float, float]:
    """Fresh, stale and stale-if-error seconds, never negative, together at most CACHE_MAX_LIFETIME_S."""
    limit = float(keyspace.CACHE_MAX_LIFETIME_S)
    fresh = min(max(0.0, plan.ttl_s), limit)
    stale = min(max(0.0, plan.stale_ttl_s), limit - fresh)
    error = min(max(0.0, plan.stale_if_error_s), limit - fresh)
    return fresh, stale, error


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a cache key or tag is 1 to {MAX_KEY_CHARS} characters")
