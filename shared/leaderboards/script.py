"""The leaderboard's Lua scripts: each operation is one of them, so one round trip.

Why entries and not plain sorted-set scores: a Redis score is a double (53 bits of mantissa), too few to
hold both a score up to 10^15 thousandths and the order in which members reached it. So every entry is
scored 0 and carries its order in its own bytes, which Redis compares byte-wise at equal scores (ZADD:
"lexicographical ordering" with memcmp):

    <16 digits: the score key><16 digits: the submission sequence>:<member>

The score key is 10^15 - units for `desc` boards and units + 10^15 for `asc` ones, so the better score
sorts first either way; the sequence (the board's counter, INCR) breaks ties: who reached the score
first ranks higher. A member's index hash maps it to its entry, for its rank (ZRANK) in O(log n).
"""

from __future__ import annotations

from shared.scripts import Script

ENTRY_PREFIX_CHARS = 33  # 16 + 16 digits and the colon before the member
UNITS_OFFSET = 10**15

_COMMON = """
local OFFSET = 1e15
local desc = ARGV[1] == 'desc'
local function key_of(units) if desc then return OFFSET - units end return units + OFFSET end
local function key_in(entry) return tonumber(string.sub(entry, 1, 16)) end
local function units_in(entry) if desc then return OFFSET - key_in(entry) end return key_in(entry) - OFFSET end
local function members_of(entries)
  local members = {}
  for i, entry in ipairs(entries) do members[i] = string.sub(entry, 34) end
  return members
end
local function data_of(data_key, entries)
  if #entries == 0 then return {} end
  return redis.call('HMGET', data_key, unpack(members_of(entries)))
end
"""

# KEYS: submission, data, sequence, then (entries, index) per window (all-time first).
# ARGV: order, member, units, policy, min units, max units, data ('' for none), submission TTL ms, then one
# PEXPIREAT ms per window (0: never), then one `<period>/<window>` label per window. Returns {0 new |
# 1 replay | 2 out of bounds, JSON of per-window [units, rank, improved, label]} (units as strings: cjson
# prints numbers to 14 digits only; the labels make a replay name the windows it was written to).
SUBMIT = Script(
    _COMMON
    + """
local stored = redis.call('GET', KEYS[1])
if stored then return {1, stored} end
local member, units, policy = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local lo, hi = tonumber(ARGV[5]), tonumber(ARGV[6])
local windows = (#KEYS - 3) / 2
-- Decide every window before writing any: a refused submission changes nothing.
local olds, news = {}, {}
for i = 1, windows do
  local old = redis.call('HGET', KEYS[3 + 2 * i], member)
  local new = units
  if old and policy == 'increment' then new = units_in(old) + units end
  if new < lo or new > hi then return {2, tostring(i)} end
  if old and (key_of(new) == key_in(old) or (policy == 'best' and key_of(new) > key_in(old))) then new = false end
  olds[i], news[i] = old, new
end
local seq = false
local out = {}
for i = 1, windows do
  local entries, index = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local entry, improved = olds[i], 0
  if news[i] then
    if not seq then
      if redis.call('EXISTS', KEYS[3]) == 0 then  -- lost or new: reseed above every value issued before
        local t = redis.call('TIME')
        redis.call('SET', KEYS[3], string.format('%.0f', tonumber(t[1]) * 1e6 + tonumber(t[2])))
      end
      seq = redis.call('INCR', KEYS[3])
    end
    if entry then redis.call('ZREM', entries, entry) end
    if not entry or key_of(news[i]) < key_in(entry) then improved = 1 end
    entry = string.format('%016.0f%016.0f:', key_of(news[i]), seq) .. member
    redis.call('ZADD', entries, 0, entry)
    redis.call('HSET', index, member, entry)
  end
  local expire_at = tonumber(ARGV[8 + i])
  if expire_at > 0 then
    redis.call('PEXPIREAT', entries, expire_at)
    redis.call('PEXPIREAT', index, expire_at)
  end
  local rank = redis.call('ZRANK', entries, entry) + 1
  out[i] = {string.format('%.0f', units_in(entry)), rank, improved, ARGV[8 + windows + i]}
end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], member, ARGV[7]) end
local payload = cjson.encode(out)
redis.call('SET', KEYS[1], payload, 'PX', ARGV[8])
return {0, payload}
"""
)

# KEYS: the window's entries, its archive, data. ARGV: order, mode ('offset' | 'after' | 'range' |
# 'count'), offset or cursor entry or lex min, lex max, limit, range offset.
# Returns {live 1|0, total, first rank, entries, data}; reads the archive once the window has expired.
READ = Script(
    _COMMON
    + """
local z = KEYS[1]
local live = 1
if redis.call('EXISTS', z) == 0 then z, live = KEYS[2], 0 end
local mode, limit = ARGV[2], tonumber(ARGV[5])
local entries, total = {}, 0
if mode == 'range' then
  total = redis.call('ZLEXCOUNT', z, ARGV[3], ARGV[4])
  if limit > 0 then entries = redis.call('ZRANGEBYLEX', z, ARGV[3], ARGV[4], 'LIMIT', ARGV[6], limit) end
else
  total = redis.call('ZCARD', z)
  if mode == 'offset' and limit > 0 then
    entries = redis.call('ZRANGE', z, ARGV[3], tonumber(ARGV[3]) + limit - 1)
  elseif mode == 'after' and limit > 0 then
    entries = redis.call('ZRANGEBYLEX', z, '(' .. ARGV[3], '+', 'LIMIT', 0, limit)
  end
end
if #entries == 0 then return {live, total, 0, {}, {}} end
return {live, total, redis.call('ZRANK', z, entries[1]) + 1, entries, data_of(KEYS[3], entries)}
"""
)

# KEYS: entries, index, archive entries, archive index, data. ARGV: order, member, around.
# Returns nil for an unknown member, else {first rank, entries around it (itself included), their data}.
MEMBER = Script(
    _COMMON
    + """
local z, h = KEYS[1], KEYS[2]
if redis.call('EXISTS', z) == 0 then z, h = KEYS[3], KEYS[4] end
local entry = redis.call('HGET', h, ARGV[2])
if not entry then return false end
local rank = redis.call('ZRANK', z, entry)
local around = tonumber(ARGV[3])
local first = math.max(0, rank - around)
local entries = redis.call('ZRANGE', z, first, rank + around)
return {first + 1, entries, data_of(KEYS[5], entries)}
"""
)

# KEYS: data, then (entries, index) per window. ARGV: order, member. Returns how many windows held it.
REMOVE = Script(
    _COMMON
    + """
local removed = 0
for i = 2, #KEYS, 2 do
  local entry = redis.call('HGET', KEYS[i + 1], ARGV[2])
  if entry then
    redis.call('ZREM', KEYS[i], entry)
    redis.call('HDEL', KEYS[i + 1], ARGV[2])
    removed = removed + 1
  end
end
redis.call('HDEL', KEYS[1], ARGV[2])
return removed
"""
)

# KEYS: a closed window's entries, its archive, the archive's index. ARGV: order, how many to keep.
# Returns -1 when already archived, else how many entries were archived (0: nothing to archive).
ARCHIVE = Script(
    _COMMON
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local entries = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, entry in ipairs(entries) do
  redis.call('ZADD', KEYS[2], 0, entry)
  redis.call('HSET', KEYS[3], string.sub(entry, 34), entry)
end
return #entries
"""
)
