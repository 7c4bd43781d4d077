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
# Analytics: a ring of per-minute counters per shard, two days long (the admin route reads at most the
# last 24 hours); the key expires two days after its last write.
RATELIMIT_STATS_RING_MINUTES = 2 * 1440
RATELIMIT_STATS_TTL_S = 2 * 86_400


def ratelimit_shard(identifier: str) -> int:
    return zlib.crc32(identifier.encode()) % RATELIMIT_SHARDS


def ratelimit_tag(policy: str, identifier: str) -> str:
    return f"{{rl:{policy}:{ratelimit_shard(identifier)}}}"


def ratelimit_state(policy: str, identifier: str) -> str:
    """Hash of every limit's counters for one identifier. TTL: the longest window of the policy."""
    return f"{PREFIX}:{ratelimit_tag(policy, identifier)}:state:{identifier}"


def ratelimit_leases(policy: str, identifier: str) -> str:
    """Sorted set of in-flight leases (score = expiry ms). TTL: the lease TTL, refreshed per lease."""
    return f"{PREFIX}:{ratelimit_tag(policy, identifier)}:leases:{identifier}"


def ratelimit_stats_for_shard(policy: str, shard: int) -> str:
    """Hash ring of per-minute allowed/denied counters for one shard of a policy (shared/ratelimit/
    script.py). TTL: RATELIMIT_STATS_TTL_S, refreshed by every decision."""
    return f"{PREFIX}:{{rl:{policy}:{shard}}}:stats"


def ratelimit_stats(policy: str, identifier: str) -> str:
    return ratelimit_stats_for_shard(policy, ratelimit_shard(identifier))


# Jobs: one status record per QStash message, under the message's own hash tag (claim and finish touch
# only it). Kept a week after its last change: long enough to look a run up, short enough to bound memory.
JOB_STATUS_TTL_S = 7 * 86_400


def job_status(message_id: str) -> str:
    """Hash: state, job, attempts, the current claim (owner, until), times and the last error."""
    return f"{PREFIX}:{{job:{message_id}}}:status"
