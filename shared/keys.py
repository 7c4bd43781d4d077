"""Every Redis key the library writes, its TTL, and its hash tag, in one place.

All keys touched by one operation share a hash tag `{...}` so Redis Cluster accepts the operation.
Rate-limit keys are tagged by policy and one of `RATELIMIT_SHARDS` shards chosen from the identifier:
an identifier's state, leases and its shard's analytics then live in one slot (one script, one round
trip), while one busy policy still spreads over several slots instead of one hot shard.
"""

from __future__ import annotations

import zlib

PREFIX = "stashkit"
RATELIMIT_SHARDS = 16
# Analytics are kept per day and read for recent minutes; two days covers "the last 24 hours".
RATELIMIT_STATS_TTL_S = 2 * 86_400


def ratelimit_tag(policy: str, identifier: str) -> str:
    shard = zlib.crc32(identifier.encode()) % RATELIMIT_SHARDS
    return f"{{rl:{policy}:{shard}}}"


def ratelimit_state(policy: str, identifier: str) -> str:
    """Hash of every limit's counters for one identifier. TTL: the longest window of the policy."""
    return f"{PREFIX}:{ratelimit_tag(policy, identifier)}:state:{identifier}"


def ratelimit_leases(policy: str, identifier: str) -> str:
    """Sorted set of in-flight leases (score = expiry ms). TTL: the lease TTL, refreshed per lease."""
    return f"{PREFIX}:{ratelimit_tag(policy, identifier)}:leases:{identifier}"


def ratelimit_stats_for_shard(policy: str, shard: int, day: int) -> str:
    """Hash of `<minute>:allowed|denied` counters for one shard of a policy. TTL: RATELIMIT_STATS_TTL_S."""
    return f"{PREFIX}:{{rl:{policy}:{shard}}}:stats:{day}"


def ratelimit_stats(policy: str, identifier: str, day: int) -> str:
    return ratelimit_stats_for_shard(policy, zlib.crc32(identifier.encode()) % RATELIMIT_SHARDS, day)
