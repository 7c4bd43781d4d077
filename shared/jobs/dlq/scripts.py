"""The dead-letter scripts: each operation is one script, atomic, in one round trip.

Every key is under the `{dlq}` hash tag (shared/keys.py). KEYS[1] is always an index, which is how a
Cluster routes the call; the entry and per-job index keys a script builds from the prefix (ARGV) share
that tag, so they live in the same slot. Times are the script's own clock (Redis TIME, or an injected
one: ARGV "now", "" for Redis TIME), returned with the result.

An entry hash: status (dead | redriving | redriven | deleted), message_id, job, body or body_b64,
attempts, error, response_status, response_body, headers (JSON), dlq_id, failed_at, and for a redrive:
claim_owner, claim_until, claimed_at, redriven_as, redriven_at. A deleted entry is a tombstone
(status and message_id only) until its original expiry, so a late duplicate callback or a reconcile
cannot bring it back.
"""

from __future__ import annotations

from shared.scripts import NOW_MS, Script

# Turn an entry into a tombstone: out of every index, expiring when the entry would have.
_BURY = """
local function bury(prefix, id, retention)
  local key = prefix .. 'entry:' .. id
  local e = redis.call('HMGET', key, 'status', 'job', 'message_id')
  if not e[1] or e[1] == 'deleted' then return 0 end
  local ttl = redis.call('PTTL', key)
  redis.call('ZREM', prefix .. 'index', id)
  redis.call('ZREM', prefix .. 'job:' .. e[2], id)
  redis.call('DEL', key)
  redis.call('HSET', key, 'status', 'deleted', 'message_id', e[3] or '')
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PEXPIRE', key, retention) end
  return 1
end
"""

# The live entries of index KEYS[1] that match the filters, newest first (failed_at descending, then id
# descending), starting after a cursor position. At most `limit` ids, and whether more match after them.
# a: 1 now, 2 prefix, 3 retention ms, 4 since ms, 5 until ms (exclusive), 6 status, 7 job ("" = any),
# 8 cursor score, 9 cursor id, 10 limit.
_SCAN = """
local function scan(index, a, now)
  local prefix, retention = a[2], tonumber(a[3])
  local since, before, status, job = tonumber(a[4]), tonumber(a[5]), a[6], a[7]
  local c_score, c_id, limit = tonumber(a[8]), a[9], tonumber(a[10])
  local low = now - retention
  if since and since > low then low = since end
  local high = '+inf'
  if before then high = '(' .. before end
  if c_score and (not before or c_score < before) then high = c_score end
  local found, offset = {}, 0
  while true do
    local batch = redis.call('ZREVRANGEBYSCORE', index, high, low, 'WITHSCORES', 'LIMIT', offset, 200)
    if #batch == 0 then return found, false end
    for i = 1, #batch, 2 do
      local id, score = batch[i], tonumber(batch[i + 1])
      if not (c_score and score == c_score and id >= c_id) then
        local e = redis.call('HMGET', prefix .. 'entry:' .. id, 'status', 'job')
        if e[1] and e[1] ~= 'deleted' and (status == '' or e[1] == status) and (job == '' or e[2] == job) then
          if #found == limit then return found, true end
          found[#found + 1] = {id, score}
        end
      end
    end
    offset = offset + 200
  end
end
"""

# KEYS: 1 index, 2 the job's index, 3 the entry. ARGV: 1 now, 2 entry id, 3 job, 4 failed_at ms ("" =
# now), 5 retention ms, 6 the message's creation ms ("" = unknown), then field/value pairs. A second
# record of one message fills only the fields the first lacked (and keeps the highest attempt count):
# duplicates collapse into one entry. Returns {outcome, now}: recorded | duplicate | deleted (a
# tombstone) | expired (the letter, or its message, is older than the retention: its tombstone, if it
# had one, may be gone, so it is not recorded again).
RECORD = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
local id, job, retention = ARGV[2], ARGV[3], tonumber(ARGV[5])
local failed = tonumber(ARGV[4]) or now
local key = KEYS[3]
local status = redis.call('HGET', key, 'status')
if status == 'deleted' then return {'deleted', now} end
if status then
  for i = 7, #ARGV, 2 do
    if ARGV[i] == 'attempts' then
      if tonumber(ARGV[i + 1]) > tonumber(redis.call('HGET', key, 'attempts') or '0') then
        redis.call('HSET', key, 'attempts', ARGV[i + 1])
      end
    else
      redis.call('HSETNX', key, ARGV[i], ARGV[i + 1])
    end
  end
  return {'duplicate', now}
end
local born = tonumber(ARGV[6]) or failed
if math.min(failed, born) + retention <= now then return {'expired', now} end
redis.call('HSET', key, 'status', 'dead', 'job', job, 'failed_at', failed, unpack(ARGV, 7))
redis.call('PEXPIREAT', key, failed + retention)
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], failed, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (now - retention))
  redis.call('PEXPIRE', KEYS[i], retention)
end
return {'recorded', now}
"""
)

# KEYS: 1 the index to scan (all entries, or one job's). ARGV: as _SCAN. Returns {now, more (0/1),
# {id, field, value, ...} per entry}.
LIST = Script(
    NOW_MS
    + _SCAN
    + """
local now = now_ms(ARGV[1])
local found, more = scan(KEYS[1], ARGV, now)
local out = {now, more and 1 or 0}
for _, hit in ipairs(found) do
  local row = redis.call('HGETALL', ARGV[2] .. 'entry:' .. hit[1])
  table.insert(row, 1, hit[1])
  out[#out + 1] = row
end
return out
"""
)

# KEYS: 1 the index to scan. ARGV: as _SCAN (limit = the batch size). Buries at most `limit` matches;
# returns {buried, more (0/1), score, id} (the position to resume from when there are more).
PURGE = Script(
    NOW_MS
    + _BURY
    + _SCAN
    + """
local now = now_ms(ARGV[1])
local found, more = scan(KEYS[1], ARGV, now)
local buried = 0
for _, hit in ipairs(found) do buried = buried + bury(ARGV[2], hit[1], tonumber(ARGV[3])) end
local last = found[#found] or {'', ''}
return {buried, more and 1 or 0, tostring(last[2]), last[1]}
"""
)

# KEYS: 1 index. ARGV: 1 prefix, 2 retention ms, 3 entry id. Returns 1 when buried, 0 when unknown.
DELETE = Script(
    _BURY
    + """
return bury(ARGV[1], ARGV[3], tonumber(ARGV[2]))
"""
)

# Claim entries for a redrive. KEYS: 1 index. ARGV: 1 now, 2 prefix, 3 owner, 4 claim ms, 5 takeover
# window ms, then entry ids. A `dead` entry is claimed (claimed_at = now). A `redriving` entry whose
# claim has lapsed (its redriver died, or its publish had an unknown outcome) is taken over only while
# now < claimed_at + window: every publish of the entry then falls inside QStash's deduplication window
# of the first, so they all carry one deduplication id and QStash keeps one message. Per id: {id,
# outcome, ...}: claimed (job, body, body_b64) | redriven (redriven_as) | busy | stuck | missing.
CLAIM = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
local prefix, owner, claim_ms, window = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {now}
for i = 6, #ARGV do
  local id = ARGV[i]
  local key = prefix .. 'entry:' .. id
  local e = redis.call('HMGET', key, 'status', 'job', 'body', 'body_b64', 'redriven_as', 'claim_until',
    'claimed_at')
  local status = e[1]
  local row
  if not status or status == 'deleted' then
    row = {id, 'missing'}
  elseif status == 'redriven' then
    row = {id, 'redriven', e[5] or ''}
  elseif status == 'redriving' and tonumber(e[6] or '0') > now then
    row = {id, 'busy'}
  elseif status == 'redriving' and now >= tonumber(e[7] or '0') + window then
    row = {id, 'stuck'}
  else
    redis.call('HSET', key, 'status', 'redriving', 'claim_owner', owner, 'claim_until', now + claim_ms)
    if status == 'dead' then redis.call('HSET', key, 'claimed_at', now) end
    row = {id, 'claimed', e[2] or '', e[3] or '', e[4] or ''}
  end
  out[#out + 1] = row
end
return out
"""
)

# Settle claimed entries, each only if this owner still holds it. KEYS: 1 index. ARGV: 1 now, 2 prefix,
# 3 owner, then triples (id, action, message id): done (published as message id: redriven) | undo
# (nothing was published: dead again) | release (the publish may have happened: still redriving,
# claim lapsed, so a redrive inside the window retries it with the same deduplication id).
SETTLE = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
local prefix, owner = ARGV[2], ARGV[3]
local settled = 0
for i = 4, #ARGV, 3 do
  local key = prefix .. 'entry:' .. ARGV[i]
  local e = redis.call('HMGET', key, 'status', 'claim_owner')
  if e[1] == 'redriving' and e[2] == owner then
    local action = ARGV[i + 1]
    if action == 'done' then
      redis.call('HSET', key, 'status', 'redriven', 'redriven_as', ARGV[i + 2], 'redriven_at', now)
      redis.call('HDEL', key, 'claim_owner', 'claim_until')
    elseif action == 'undo' then
      redis.call('HSET', key, 'status', 'dead')
      redis.call('HDEL', key, 'claim_owner', 'claim_until', 'claimed_at')
    else
      redis.call('HSET', key, 'claim_until', 0)
      redis.call('HDEL', key, 'claim_owner')
    end
    settled = settled + 1
  end
end
return settled
"""
)

# Dead letters per job since the last digest. KEYS: 1 index, 2 digest mark. ARGV: 1 now, 2 prefix,
# 3 retention ms. Counts entries with last mark < failed_at < now (the first digest: the whole
# retention); returns {now, mark ("" = none yet), job, count, job, count, ...}.
DIGEST_COUNT = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
local mark = redis.call('GET', KEYS[2])
local low = tonumber(mark) or (now - tonumber(ARGV[3]))
local counts, order = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. low, '(' .. now)) do
  local job = redis.call('HGET', ARGV[2] .. 'entry:' .. id, 'job')
  if job then
    if not counts[job] then counts[job] = 0; order[#order + 1] = job end
    counts[job] = counts[job] + 1
  end
end
local out = {now, mark or ''}
for _, job in ipairs(order) do out[#out + 1] = job; out[#out + 1] = counts[job] end
return out
"""
)

# Move the digest mark from what DIGEST_COUNT saw to `now - 1` (the next digest counts from `now`),
# unless another digest moved it first. KEYS: 1 digest mark. ARGV: 1 expected mark ("" = none), 2 new
# mark, 3 retention ms. Returns 1 when moved.
DIGEST_ADVANCE = Script(
    """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
return 1
"""
)
