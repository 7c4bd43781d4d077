"""The scripts behind every lock operation: each one round trip, each atomic on its endpoint.

Keys (shared/keys.py): the lease hash (`owner`, `expires`) and the fencing-token counter, under one
hash tag per lock. Times: ARGV `now_ms` is the injected clock's time, or "" to read Redis TIME, and
every script returns the time it used, so the expiry a caller sees comes from the same clock that
decided (shared/clock.py). A lease counts as held while `expires > now`; its PEXPIRE (the lease length)
only collects it, so a test clock that jumps ahead sees it expire exactly as Redis time would.

Numbers: tokens are about 1.8e15 (a counter seeded from microseconds), below 2^53, so Lua's doubles hold
them exactly; but Lua prints a number with 14 significant digits when it passes one to `redis.call`, so
tokens travel as strings (ARGV as sent, or `string.format('%d', n)`).
"""

from __future__ import annotations

from shared.scripts import Script

# The time a script decides with: ARGV[n] if the caller's clock gave one, else Redis TIME (in ms).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(ARGV[{arg}]) or (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
"""

# Grant the lease if it is free, and issue its token, in one step (the SET NX PX + INCR).
# KEYS: 1 lease, 2 counter. ARGV: 1 owner, 2 lease ms, 3 now ms or "".
# Returns {1, token, now, expires} when granted, {0, 0, now, the holder's expires} when not.
ACQUIRE = Script(
    _NOW.format(arg=3)
    + """
local lease_ms = tonumber(ARGV[2])
local held_until = tonumber(redis.call('HGET', KEYS[1], 'expires'))
if held_until and held_until > now then return {0, 0, now, held_until} end
-- A counter that is missing (never used, flushed, evicted) starts from Redis TIME in microseconds:
-- above every token issued before, as long as this lock grants at most one lease per microsecond.
redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), 'NX')
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'expires', string.format('%d', now + lease_ms))
redis.call('PEXPIRE', KEYS[1], lease_ms)
return {1, token, now, now + lease_ms}
"""
)

# Push the lease's end to now + lease ms, only for its owner and only while it has not expired.
# KEYS: 1 lease. ARGV: 1 owner, 2 lease ms, 3 now ms or "". Returns {1|0, now, new expires or 0}.
EXTEND = Script(
    _NOW.format(arg=3)
    + """
local lease = redis.call('HMGET', KEYS[1], 'owner', 'expires')
local expires = tonumber(lease[2])
if lease[1] ~= ARGV[1] or not expires or expires <= now then return {0, now, 0} end
local lease_ms = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'expires', string.format('%d', now + lease_ms))
redis.call('PEXPIRE', KEYS[1], lease_ms)
return {1, now, now + lease_ms}
"""
)

# Delete the lease only for its owner: a check-and-delete in one step, never GET then DEL (another owner
# may be granted between the two). With several endpoints it also brings a counter that lags behind
# the lease's token up to it, for free (see lock.py). KEYS: 1 lease, 2 counter. ARGV: 1 owner, 2 token.
# Returns 1 if the lease was this owner's, else 0 (and nothing changed).
RELEASE = Script(
    """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local counter = tonumber(redis.call('GET', KEYS[2]))
if counter and counter < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"""
)

# Is the lease still this owner's, with at least `margin` ms left? KEYS: 1 lease. ARGV: 1 owner,
# 2 margin ms, 3 now ms or "". Returns {1|0, now, expires or 0}.
CHECK = Script(
    _NOW.format(arg=3)
    + """
local lease = redis.call('HMGET', KEYS[1], 'owner', 'expires')
local expires = tonumber(lease[2])
if lease[1] == ARGV[1] and expires and expires - now >= tonumber(ARGV[2]) then return {1, now, expires} end
return {0, now, expires or 0}
"""
)

# Redlock's write-back: raise the counter to a token issued from another endpoint's counter, never lower
# it. KEYS: 1 counter. ARGV: 1 token. Returns 1.
RAISE = Script(
    """
local counter = tonumber(redis.call('GET', KEYS[1]))
if not counter or counter < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""
)

# A caller's Lua body, run only if ARGV[1] (a token) is at least the newest token accepted for the
# resource (KEYS[1], its fence record) and, when ARGV[3] is "1", the newest issued by the lock
# (KEYS[2], its counter). The body sees only its own KEYS and ARGV (those after ours), as parameters
# that shadow the globals. The fence record is written after the body, so a body that raises an error
# leaves the fence as it was. KEYS: 1 fence, [2 counter], then the body's. ARGV: 1 token, 2 fence TTL
# ms, 3 "1" with a counter else "0", then the body's. Returns {1, the body's result} or {0, newest}.
FENCE_TEMPLATE = """
local function body(KEYS, ARGV)
{body}
end
local token = tonumber(ARGV[1])
local newest = tonumber(redis.call('GET', KEYS[1]))
local first = 2
if ARGV[3] == '1' then
  first = 3
  local issued = tonumber(redis.call('GET', KEYS[2]))
  if issued and (not newest or issued > newest) then newest = issued end
end
if newest and token < newest then return {{0, newest}} end
local keys, argv = {{}}, {{}}
for i = first, #KEYS do keys[#keys + 1] = KEYS[i] end
for i = 4, #ARGV do argv[#argv + 1] = ARGV[i] end
local result = body(keys, argv)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {{1, result}}
"""
