"""GCRA in Redis: the two Lua scripts the Redis rate-limit backend runs, and reading their answers.

Algorithm: GCRA (the generic cell rate algorithm). Each limit is one number in Redis, its
*theoretical arrival time* (TAT, microseconds on the Redis server's clock): with ``T = 60 s /
per_minute`` per unit and tolerance ``tau = capacity x T``, a charge of ``c`` units fits when
``max(TAT, now) + c*T - tau <= now``, and then ``TAT = max(TAT, now) + c*T``. That is exactly the
leaky bucket the in-process backend runs (``level = (TAT - now) / T``), so the two backends admit
the same requests, compute the same ``Retry-After`` and ``x-ratelimit-*`` values, and honour
``window_s`` alike. GCRA over a token bucket: one plain string per limit instead of a two-field
hash (one SET per write, a TTL that is simply ``TAT - now``), and a correction (refund or debt) is
a single addition to the TAT.
"""

from __future__ import annotations

import hashlib

from plugins.ratelimit_backend import BucketView, Charge, Limit

ADMIT = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tat, new = {}, {}
local ok = 1
for i = 1, n do
  local iv, tau, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local v = tonumber(redis.call('GET', KEYS[i])) or now
  if v < now then v = now end
  tat[i] = v
  new[i] = v + cost * iv
  if new[i] - tau > now + 1 then ok = 0 end
end
local out = {ok}
for i = 1, n do
  if ok == 1 then
    redis.call('SET', KEYS[i], string.format('%.0f', new[i]), 'PX', math.ceil((new[i] - now) / 1000) + 1000)
    out[i + 1] = new[i] - now
  else
    out[i + 1] = tat[i] - now
  end
end
return out
"""

SETTLE = r"""
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 2, #KEYS do
  local iv, delta = tonumber(ARGV[2*i-2]), tonumber(ARGV[2*i-1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local n = tat + delta * iv
  if n <= now then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], string.format('%.0f', n), 'PX', math.ceil((n - now) / 1000) + 1000)
  end
end
return 1
"""

ADMIT_SHA = hashlib.sha1(ADMIT.encode()).hexdigest()
SETTLE_SHA = hashlib.sha1(SETTLE.encode()).hexdigest()


def interval_us(limit: Limit) -> float:
    return 60_000_000 / limit.per_minute


def view(charge: Charge, ahead_us: int, admitted: bool) -> BucketView:
    """A bucket from the script's answer: how far its TAT is ahead of now (after the charge when
    admitted, before it when not)."""
    limit, iv = charge.limit, interval_us(charge.limit)
    level = ahead_us / iv
    wait = 0.0 if admitted else max(0.0, ahead_us + charge.amount * iv - limit.capacity * iv) / 1e6
    return BucketView(limit, max(0.0, limit.capacity - level), ahead_us / 1e6, wait)
