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
from collections.abc import Sequence

from plugins.ratelimit_backend import REQUESTS, BucketView, Charge, Limit

# KEYS: the buckets. ARGV: per bucket its interval, tolerance and cost (microseconds, units), then
# the request's token estimate: a cost below zero, -c, stands for that estimate at most c, so a
# plan's arguments are fixed and a request adds one (``Plan.admit``). Reply: per bucket its TAT
# ahead of now (after the charge when admitted, before it when not), then 1 (admitted) or 0.
ADMIT = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tokens = tonumber(ARGV[3*n+1])
local tat, new = {}, {}
local ok = 1
for i = 1, n do
  local iv, tau, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  if cost < 0 then cost = math.min(tokens, -cost) end
  local v = tonumber(redis.call('GET', KEYS[i])) or now
  if v < now then v = now end
  tat[i] = v
  new[i] = v + cost * iv
  if new[i] - tau > now + 1 then ok = 0 end
end
local out = {}
for i = 1, n do
  if ok == 1 then
    redis.call('SET', KEYS[i], string.format('%.0f', new[i]), 'PX', math.ceil((new[i] - now) / 1000) + 1000)
    out[i] = new[i] - now
  else
    out[i] = tat[i] - now
  end
end
out[n + 1] = ok
return out
"""

# Many requests' settles in one call. KEYS: per settle its marker, then its buckets. ARGV: the
# markers' PX, then per settle its bucket count m and m pairs (interval, units to add). A settle
# whose marker is already set (a replay) changes nothing. Reply: per settle 1 (applied) or 0.
SETTLE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local k, a = 1, 2
while a <= #ARGV do
  local m = tonumber(ARGV[a])
  if redis.call('SET', KEYS[k], '1', 'NX', 'PX', ARGV[1]) then
    for i = 1, m do
      local key, iv, delta = KEYS[k + i], tonumber(ARGV[a + 2*i - 1]), tonumber(ARGV[a + 2*i])
      local tat = tonumber(redis.call('GET', key)) or now
      if tat < now then tat = now end
      local v = tat + delta * iv
      if v <= now then
        redis.call('DEL', key)
      else
        redis.call('SET', key, string.format('%.0f', v), 'PX', math.ceil((v - now) / 1000) + 1000)
      end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  k = k + m + 1
  a = a + 2*m + 1
end
return out
"""

ADMIT_SHA = hashlib.sha1(ADMIT.encode()).hexdigest()
SETTLE_SHA = hashlib.sha1(SETTLE.encode()).hexdigest()


def interval_us(limit: Limit) -> float:
    return 60_000_000 / limit.per_minute


def encoded(limit: Limit) -> tuple[str, str]:
    """A bucket's interval and tolerance as the scripts take them (text, microseconds)."""
    iv = interval_us(limit)
    return repr(iv), repr(limit.capacity * iv)


def admit_command(keys: Sequence[str], limits: Sequence[Limit]) -> tuple[str, ...]:
    """A plan's ``ADMIT`` call but for the token estimate (its last argument): one unit per
    requests limit, the estimate capped at the capacity (a negative cost) per tokens limit."""
    args: list[str] = []
    for limit in limits:
        args += (*encoded(limit), "1" if limit.kind == REQUESTS else repr(-float(limit.capacity)))
    return ("EVALSHA", ADMIT_SHA, str(len(keys)), *keys, *args)


def view(charge: Charge, ahead_us: int, admitted: bool) -> BucketView:
    """A bucket from the script's answer: how far its TAT is ahead of now (after the charge when
    admitted, before it when not). Room and reset in the same arithmetic as ``Plan.put_headers``."""
    limit = charge.limit
    reset = ahead_us / 1e6
    wait = 0.0
    if not admitted:
        iv = interval_us(limit)
        wait = max(0.0, ahead_us + charge.amount * iv - limit.capacity * iv) / 1e6
    return BucketView(limit, max(0.0, limit.capacity - reset / limit.interval_s), reset, wait)
