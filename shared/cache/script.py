"""The cache's Lua scripts: each decision about one key is made, and committed, in one round trip.

Time: each script takes `now_ms` ("" = Redis TIME, one clock for every function instance) and returns
the time it used, so freshness is never decided by a function's own wall clock. Not shared/scripts.py's
NOW_MS prelude: these scripts also need microseconds (a tag stamp is compared with the lookup that
started a computation; in milliseconds, the two could fall in the same one and not be ordered). Large
numbers are formatted with `%.0f` before they are stored: Lua would print 16 digits as `1.7e+15`.

LOOKUP   KEYS entry, lease, generation
         ARGV now_ms, lease token, lease ms, ignore write id, beta, u (0 < u <= 1, the XFetch draw)
         -> {state, now_ms, won, generation, payload, fresh_until, stale_until, error_until, delta_ms,
             started_us, written_ms, write_id, now_us}
         state: "fresh", "early" (fresh, but the XFetch draw says refresh now), "stale" (past fresh,
         within stale-while-revalidate), "miss" (absent, past its stale window, or the write id the
         caller found invalid). `won` is 1 when this call took the refresh lease (never on "fresh").
STORE    KEYS entry, lease, generation
         ARGV now_ms, lease token, mode ("compute": only if the generation still equals ARGV[4];
         "set": a write-through, which bumps the generation), expected generation, payload ("" =
         store nothing, just release the lease), fresh ms, stale ms, stale-if-error ms, delta ms,
         started µs ("" = now), write id, generation TTL ms
         -> {stored 1/0, now_ms}
FORGET   KEYS entry, generation; ARGV generation TTL ms -> 1
         deletes the entry and bumps the generation, so a recompute already running cannot store
STAMP    KEYS tag stamp; ARGV now_ms, TTL ms -> the stamp (µs)
         marks every entry of the tag computed until now as invalid (never moves a stamp back)

XFetch (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB
2015): refresh early when `now - delta * beta * ln(u) >= expiry`, u uniform in (0, 1]. The caller draws
u (so tests can seed it) and the script compares it with the entry's own delta and expiry.
"""

from __future__ import annotations

from shared.scripts import Script

_NOW = """
local now_us
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now_us = tonumber(ARGV[1]) * 1000
end
local now = math.floor(now_us / 1000)
"""

LOOKUP = Script(
    _NOW
    + """
local e = redis.call('HMGET', KEYS[1], 'p', 'f', 's', 'e', 'd', 't', 'c', 'w')
local state = 'miss'
if e[1] and e[8] ~= ARGV[4] then
  local f, s = tonumber(e[2]), tonumber(e[3])
  if now < f then
    state = 'fresh'
    local d, beta, u = tonumber(e[5]), tonumber(ARGV[5]), tonumber(ARGV[6])
    if d > 0 and beta > 0 and now - d * beta * math.log(u) >= f then state = 'early' end
  elseif now < s then
    state = 'stale'
  end
end
local won = 0
if state ~= 'fresh' and redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then won = 1 end
local out = {state, now, won, redis.call('GET', KEYS[3]) or ''}
for i = 1, 8 do out[#out + 1] = e[i] or '' end
out[#out + 1] = string.format('%.0f', now_us)
return out
"""
)

STORE = Script(
    _NOW
    + """
local generation_ttl = tonumber(ARGV[12])
local started = ARGV[10]
if ARGV[3] == 'compute' then
  if (redis.call('GET', KEYS[3]) or '') ~= ARGV[4] then
    if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
    return {0, now}
  end
else
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], generation_ttl)
end
if started == '' then started = string.format('%.0f', now_us) end
local stored = 0
if ARGV[5] ~= '' then
  local f = now + tonumber(ARGV[6])
  local s = f + tonumber(ARGV[7])
  local e = math.max(s, f + tonumber(ARGV[8]))
  if e > now then
    redis.call('HSET', KEYS[1], 'p', ARGV[5], 'f', string.format('%.0f', f), 's', string.format('%.0f', s),
      'e', string.format('%.0f', e), 'd', ARGV[9], 't', started, 'c', string.format('%.0f', now), 'w', ARGV[11])
    redis.call('PEXPIRE', KEYS[1], e - now)
    stored = 1
  elseif ARGV[3] == 'set' then
    redis.call('DEL', KEYS[1])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return {stored, now}
"""
)

FORGET = Script(
    """
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1]))
return 1
"""
)

STAMP = Script(
    _NOW
    + """
local stamp = math.max(now_us, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.0f', stamp), 'PX', tonumber(ARGV[2]))
return string.format('%.0f', stamp)
"""
)
