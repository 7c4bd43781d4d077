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


# Locks and leader elections (shared/locks/): every key of one lock shares the tag `{<kind>:<name>}`,
# so its lease, its counter and any resource the caller keeps beside them (`lock_resource`) live in one
# slot, and a fenced write can compare against the lock's counter in the same script. A lock and an
# election of the same name never share keys (kind "lock" or "leader").

# The newest token accepted per fenced resource is forgotten this long after the resource's last
# accepted write: far beyond what one invocation may last (Lambda ends one after 15 min, Vercel after
# 800 s), so no paused holder inside a function outlives its fence.
FENCE_TTL_S = 7 * 86_400


def lock_tag(kind: str, name: str) -> str:
    return f"{{{kind}:{name}}}"


def lock_lease(kind: str, name: str) -> str:
    """Hash of the current lease: `owner` (this grant's random id) and `expires` (epoch ms, in the time of
    the script that granted it). TTL: the lease itself (PEXPIRE at each grant and extension)."""
    return f"{PREFIX}:{lock_tag(kind, name)}:lease"


def lock_counter(kind: str, name: str) -> str:
    """The lock's fencing-token counter. No TTL, on purpose: a token must never be issued twice or go
    backwards, so the counter must outlive every holder. If Redis loses it anyway (FLUSHALL, a restart
    without persistence, an `allkeys-*` eviction policy), the next grant reseeds it from Redis TIME in
    microseconds, which is above every token issued before (shared/locks/lock.py says why)."""
    return f"{PREFIX}:{lock_tag(kind, name)}:counter"


def lock_resource(kind: str, name: str, resource: str) -> str:
    """A key of the caller's own in the lock's slot, for a resource the lock guards (so a fenced write can
    also check the lock's counter: shared/locks/fencing.py). TTL: the caller's."""
    return f"{PREFIX}:{lock_tag(kind, name)}:res:{resource}"


def hash_tag(key: str) -> str:
    """The part of `key` that Redis Cluster hashes to pick its slot: the text between the first `{` and
    the first `}` after it, if that is not empty; else the whole key (Redis Cluster specification,
    "Hash tags")."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def fence(resource: str) -> str:
    """The newest fencing token accepted for the Redis key `resource`, in `resource`'s own slot (so one
    script can check it and write the resource). TTL: FENCE_TTL_S after the last accepted write (or the
    resource's own TTL, if longer)."""
    tag = hash_tag(resource)
    if "}" in tag:  # no tag of ours could land in the resource's slot
        raise ValueError(f"cannot fence {resource!r}: a key with '}}' outside a hash tag cannot be co-located")
    return f"{PREFIX}:{{{tag}}}:fence:{resource}"


# Dead letters (shared/jobs/dlq): every key under the one hash tag `{dlq}`, so the scripts that list,
# purge and redrive across entries and indexes touch a single Cluster slot. A dead letter lives until
# `failed_at + retention` (STASHKIT_DLQ_RETENTION_DAYS, default 30): its hash expires then (PEXPIREAT),
# and every write drops index members older than the retention by score.
DLQ_TAG = "{dlq}"
DLQ_PREFIX = f"{PREFIX}:{DLQ_TAG}:"  # the scripts build entry and per-job index keys from it


def dlq_entry(entry_id: str) -> str:
    """Hash: status, message_id, job, body, attempts, error, the last response, failed_at, the redrive
    claim and its outcome. TTL: PEXPIREAT failed_at + retention (a deleted entry's tombstone keeps it)."""
    return f"{DLQ_PREFIX}entry:{entry_id}"


def dlq_index() -> str:
    """Sorted set of every live entry id, scored by failed_at ms. TTL: the retention, refreshed by every
    write (each member is younger than the last write, so none outlives the key)."""
    return f"{DLQ_PREFIX}index"


def dlq_job_index(job: str) -> str:
    """Sorted set of one job's entry ids, scored by failed_at ms (lists filtered by job read only it).
    TTL: the retention, refreshed by every write for that job."""
    return f"{DLQ_PREFIX}job:{job}"


def dlq_digest() -> str:
    """String: the failed_at ms up to which the last digest counted (shared/jobs/builtin.py). TTL: the
    retention, refreshed by each digest: an older mark would only count entries that are gone anyway."""
    return f"{DLQ_PREFIX}digest"


# Webhooks (shared/webhooks): each delivery's replay marker under its own hash tag (the receive script
# touches only it), named by a digest of the delivery id so a sender's id never shapes our key. Kept a
# day, and never less than twice the source's timestamp tolerance: a signed timestamp is accepted from
# `tolerance` in the past to `tolerance` in the future, so a captured request can be replayed up to
# 2 x tolerance after it was first seen. A sender retries only what we did not acknowledge, and a
# delivery whose publish failed has its marker removed, so a day covers every duplicate we would see.
WEBHOOK_SEEN_TTL_S = 86_400
# The built-in `webhooks.record` job keeps the newest deliveries of each source, a week after the last.
WEBHOOK_LOG_MAX = 1_000
WEBHOOK_LOG_TTL_S = 7 * 86_400


def webhook_seen(source: str, delivery_digest: str) -> str:
    """String: the random id of the request that first received the delivery (so only that request
    removes it again, if its publish fails). TTL: max(WEBHOOK_SEEN_TTL_S, 2 x the source's tolerance)."""
    return f"{PREFIX}:{{wh:{source}:{delivery_digest}}}:seen"


def webhook_log(source: str) -> str:
    """List of the newest WEBHOOK_LOG_MAX deliveries of `source` (JSON), newest first (the built-in
    `webhooks.record` job). TTL: WEBHOOK_LOG_TTL_S after the last delivery recorded."""
    return f"{PREFIX}:{{whlog:{source}}}:deliveries"


# Cache (shared/cache/): every key of one logical cache key shares the tag `{c:<namespace>:<key>}`, so
# its entry, its refresh lease and its generation live in one slot and one script reads or writes them
# together. A tag's invalidation stamp lives in the tag's own slot `{ct:<namespace>:<tag>}`: one
# invalidation is one write whatever the number of keys carrying it (shared/cache/store.py).

# The longest an entry may live (fresh + stale-while-revalidate + stale-if-error): a bound, so that a
# tag stamp (CACHE_TAG_TTL_S) always outlives every entry written before it.
CACHE_MAX_LIFETIME_S = 7 * 86_400
# A tag's invalidation stamp must outlive every entry that started computing before it; an entry lives
# at most CACHE_MAX_LIFETIME_S after it is written, and a recompute is bounded by the function's own
# time limit (Lambda 15 min, Vercel 800 s), so four weeks leave three weeks of slack.
CACHE_TAG_TTL_S = 4 * 7 * 86_400
# A key's generation must outlive any recompute that read the previous one (same bound as above).
CACHE_GENERATION_TTL_S = 86_400
CACHE_STATS_TTL_S = 30 * 86_400  # refreshed by every write of the counters


def cache_tag(namespace: str, key: str) -> str:
    return f"{{c:{namespace}:{key}}}"


def cache_entry(namespace: str, key: str) -> str:
    """Hash: payload `p` (format-versioned), fresh-until `f`, stale-until `s`, error-until `e` (epoch ms),
    recompute time `d` ms, compute start `t` (µs), write time `c` ms, write id `w`. TTL: until `e`."""
    return f"{PREFIX}:{cache_tag(namespace, key)}:entry"


def cache_lease(namespace: str, key: str) -> str:
    """String: the token of the one caller recomputing the key (SET NX PX). TTL: the lease."""
    return f"{PREFIX}:{cache_tag(namespace, key)}:lease"


def cache_generation(namespace: str, key: str) -> str:
    """Counter bumped by every invalidation or write-through of the key; a recompute stores its result
    only if it is unchanged since it started. TTL: CACHE_GENERATION_TTL_S after the last bump."""
    return f"{PREFIX}:{cache_tag(namespace, key)}:gen"


def cache_tag_stamp(namespace: str, tag: str) -> str:
    """String: when the tag was last invalidated (µs, script time); an entry whose computation started
    at or before it is invalid. TTL: CACHE_TAG_TTL_S after the last invalidation."""
    return f"{PREFIX}:{{ct:{namespace}:{tag}}}:stamp"


def cache_stats(namespace: str) -> str:
    """Hash of counters (hits, stale, misses, computes, refreshes, invalidations, ...). TTL:
    CACHE_STATS_TTL_S, refreshed by every write."""
    return f"{PREFIX}:{{cs:{namespace}}}:stats"


# Leaderboards (shared/leaderboards/): every key of one board shares the tag `{lb:<board>}`, so one
# script writes the all-time board and every period's window together (one round trip, one Cluster slot).
# A window is a sorted set whose members are `<score key><sequence>:<member>` (all scored 0, ordered
# byte-wise: shared/leaderboards/script.py says why) beside a hash member -> that entry.
# A submission id is remembered a day: a client retrying within that replays the original result.
LEADERBOARD_SUBMISSION_TTL_S = 86_400


def leaderboard_tag(board: str) -> str:
    return f"{{lb:{board}}}"


def leaderboard_entries(board: str, period: str, window: str) -> str:
    """Sorted set of one window's entries in rank order (period "all", window "all": the all-time board).
    TTL: none for all-time; a period's window expires `keep_windows` windows after it closes (PEXPIREAT,
    set by every write)."""
    return f"{PREFIX}:{leaderboard_tag(board)}:z:{period}:{window}"


def leaderboard_index(board: str, period: str, window: str) -> str:
    """Hash member -> its entry in `leaderboard_entries`. TTL: the same as its sorted set's."""
    return f"{PREFIX}:{leaderboard_tag(board)}:h:{period}:{window}"


def leaderboard_archive(board: str, period: str, window: str) -> str:
    """Sorted set of a closed window's top `archive_top` entries (the archive job). No TTL, on purpose:
    an archive is the record of a closed window, and it is bounded (`archive_top` entries per window)."""
    return f"{PREFIX}:{leaderboard_tag(board)}:az:{period}:{window}"


def leaderboard_archive_index(board: str, period: str, window: str) -> str:
    """Hash member -> its entry in `leaderboard_archive`. No TTL: the same as its sorted set's."""
    return f"{PREFIX}:{leaderboard_tag(board)}:ah:{period}:{window}"


def leaderboard_data(board: str) -> str:
    """Hash member -> its data (small JSON). No TTL: it belongs to the all-time board, which never expires;
    removing a member deletes its field."""
    return f"{PREFIX}:{leaderboard_tag(board)}:data"


def leaderboard_sequence(board: str) -> str:
    """The board's submission counter (the tie-break: who reached a score first). No TTL, on purpose: it
    must never go back; if Redis loses it, the next submission reseeds it from Redis TIME in microseconds,
    above every value issued before (as the lock counters do)."""
    return f"{PREFIX}:{leaderboard_tag(board)}:seq"


def leaderboard_submission(board: str, submission_id: str) -> str:
    """String: the JSON result of one submission, replayed for a repeat. TTL: LEADERBOARD_SUBMISSION_TTL_S."""
    return f"{PREFIX}:{leaderboard_tag(board)}:sub:{submission_id}"
