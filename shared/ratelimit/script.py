"""The one script behind every rate-limit decision: all limits of a policy, the in-flight leases and
the analytics counter, checked and committed atomically in one round trip.

KEYS: 1 state hash, 2 analytics ring, 3 leases sorted set (all under one hash tag: shared/keys.py).
ARGV: 1 now_ms ("" = Redis TIME, so every function instance shares one clock), 2 cost (negative =
refund), 3 mode ("check" commits; "peek" computes exactly what a check would answer and writes
nothing), 4 analytics TTL s, 5 lease id, 6 lease limit (0 = none), 7 lease TTL ms, 8 analytics ring
size in minutes, 9 number of limits, then 4 numbers per limit: kind (1 fixed window, 2 sliding
window, 3 token bucket), limit (tokens for a bucket), window ms (refill interval), refill per
interval (buckets only).

Returns integers: allowed (1/0), index of the limit that denied (-1 none, -2 concurrency), now ms
(the time every derived header and expiry must use), retry-at ms (0 if allowed), leases in flight,
then per limit: limit, remaining (after this request when it is allowed, else as it stands), reset ms.
A denied request changes no counter (only the analytics).

Analytics live in a ring of minutes: fields `m<slot>` (the minute the slot holds), `a<slot>` and
`d<slot>` (allowed, denied), slot = minute % ring size. The minute comes from the script's own time,
so the analytics key needs no date in its name (and no client clock): a slot whose `m` is an older
minute is reset before it is counted again.
"""

from __future__ import annotations

from shared.scripts import NOW_MS, Script

DECIDE = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
local cost = tonumber(ARGV[2])
local commit = ARGV[3] == 'check'
local n = tonumber(ARGV[9])
local flat = redis.call('HGETALL', KEYS[1])
local s = {}
for i = 1, #flat, 2 do s[flat[i]] = tonumber(flat[i + 1]) end

local allowed, blocking, retry_at, horizon = true, -1, 0, 0
local rows, writes = {}, {}
for i = 0, n - 1 do
  local b = 10 + i * 4
  local kind, limit = tonumber(ARGV[b]), tonumber(ARGV[b + 1])
  local window, rate = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local p = 'l' .. i .. ':'
  local ok, remaining_now, remaining_after, reset, wait_until
  if kind == 1 then
    local w = math.floor(now / window)
    local c = 0
    if s[p .. 'w'] == w then c = s[p .. 'c'] or 0 end
    ok = c + cost <= limit
    remaining_now, remaining_after = limit - c, limit - math.max(0, c + cost)
    reset, wait_until = (w + 1) * window, (w + 1) * window
    writes[#writes + 1] = {p .. 'w', w, p .. 'c', math.max(0, c + cost)}
    horizon = math.max(horizon, reset - now)
  elseif kind == 2 then
    local w = math.floor(now / window)
    local cur, prev = 0, 0
    if s[p .. 'w'] == w then cur, prev = s[p .. 'c'] or 0, s[p .. 'p'] or 0
    elseif s[p .. 'w'] == w - 1 then prev = s[p .. 'c'] or 0 end
    local weight = (window - (now - w * window)) / window
    local used = math.floor(prev * weight) + cur
    ok = used + cost <= limit
    remaining_now = math.max(0, limit - used)
    remaining_after = math.max(0, limit - math.floor(prev * weight) - math.max(0, cur + cost))
    reset = (w + 1) * window
    -- the previous window's weight decays: the first moment used + cost fits again
    local room = limit - cur - cost
    if room < 0 or prev == 0 then wait_until = reset
    else wait_until = w * window + math.ceil(window * (1 - room / prev)) end
    writes[#writes + 1] = {p .. 'w', w, p .. 'c', math.max(0, cur + cost), p .. 'p', prev}
    horizon = math.max(horizon, 2 * window)
  else
    local tokens, ts = s[p .. 't'], s[p .. 'ts']
    if not tokens then tokens, ts = limit, now end
    local steps = math.floor((now - ts) / window)
    if steps > 0 then tokens, ts = math.min(limit, tokens + steps * rate), ts + steps * window end
    if tokens >= limit then ts = now end
    ok = tokens >= cost
    remaining_now, remaining_after = tokens, math.min(limit, tokens - cost)
    reset = ts + window
    wait_until = ts + math.ceil(math.max(0, cost - tokens) / rate) * window
    writes[#writes + 1] = {p .. 't', math.min(limit, tokens - cost), p .. 'ts', ts}
    horizon = math.max(horizon, math.ceil(limit / rate) * window + window)
  end
  if not ok then
    if allowed then blocking = i end
    allowed = false
    retry_at = math.max(retry_at, wait_until)
  end
  rows[#rows + 1] = {limit, remaining_now, remaining_after, reset}
end

local lease_limit = tonumber(ARGV[6])
local in_flight = 0
if lease_limit > 0 then
  in_flight = redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')  -- leases not yet expired
  if cost > 0 and allowed and in_flight >= lease_limit then
    allowed, blocking = false, -2
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    retry_at = tonumber(oldest[2])
  end
end

if commit and allowed then
  for _, w in ipairs(writes) do redis.call('HSET', KEYS[1], unpack(w)) end
  redis.call('PEXPIRE', KEYS[1], horizon + 1000)
  if lease_limit > 0 and cost > 0 then
    local ttl = tonumber(ARGV[7])
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
    redis.call('PEXPIRE', KEYS[3], ttl)
    in_flight = in_flight + 1
  end
end
if commit then
  local minute = math.floor(now / 60000)
  local slot = minute % tonumber(ARGV[8])
  if tonumber(redis.call('HGET', KEYS[2], 'm' .. slot)) ~= minute then
    redis.call('HSET', KEYS[2], 'm' .. slot, minute, 'a' .. slot, 0, 'd' .. slot, 0)
  end
  redis.call('HINCRBY', KEYS[2], (allowed and 'a' or 'd') .. slot, 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
end

local out = {allowed and 1 or 0, blocking, now, allowed and 0 or retry_at, in_flight}
for _, r in ipairs(rows) do
  local remaining = r[2]
  if allowed then remaining = r[3] end
  out[#out + 1] = r[1]
  out[#out + 1] = remaining
  out[#out + 1] = r[4]
end
return out
"""
)
