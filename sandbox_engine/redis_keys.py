"""API keys across replicas (--redis-url): the secret their hashes are keyed with, and each key's
requests of the last minute, in Redis, so that a key made once works on every replica that reads
the same keys file (--keys-file), and its rate is one count however many replicas it reaches.
"""

from __future__ import annotations

import secrets

import redis

from .rates import WINDOW

# The same window as rates.RateLimits, counted on Redis's clock (one clock for every replica):
# KEYS: the key's counts (a hash: second -> requests). ARGV: the rate, the window.
# Returns 0 when the request is taken, else the seconds until one more would be.
_TAKE = """
local now = tonumber(redis.call('TIME')[1])
local rate, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local flat = redis.call('HGETALL', KEYS[1])
local total, live = 0, {}
for i = 1, #flat, 2 do
  local second, count = tonumber(flat[i]), tonumber(flat[i + 1])
  if second > now - window and second <= now then
    total = total + count
    table.insert(live, {second, count})
  else
    redis.call('HDEL', KEYS[1], flat[i])
  end
end
if total >= rate then
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local left = total
  for _, slot in ipairs(live) do
    left = left - slot[2]
    if left < rate then return slot[1] + window - now end
  end
  return 1
end
redis.call('HINCRBY', KEYS[1], now, 1)
redis.call('EXPIRE', KEYS[1], window + 1)
return 0
"""


def key_secret(url: str, instance: str) -> bytes:
    """The instance's secret for the keys' keyed hash: made by whoever asks first, never changed."""
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    try:
        name = f"se:{instance}:keys-secret"
        client.set(name, secrets.token_bytes(32), nx=True)
        return client.get(name)
    finally:
        client.close()


class RedisRateLimits:
    """Requests per minute of each API key, counted exactly across replicas (see rates)."""

    def __init__(self, url: str, instance: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._prefix = f"se:{instance}:rate:"
        self._take = self._redis.register_script(_TAKE)

    def take(self, name: str, rate: int) -> int | None:
        """None if the request is counted; else how many seconds until one more would be."""
        wait = int(self._take(keys=[self._prefix + name], args=[rate, WINDOW]))
        return wait or None
