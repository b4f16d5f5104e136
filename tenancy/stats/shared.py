"""Counts kept in a shared Redis as they happen, so a killed process loses none.

With ``TENANCY["STATS_SHARED"]`` on (the default when the cache named by
``STATS_CACHE_ALIAS`` is Redis), every process adds its counts to per-hour
Redis hashes at the end of each request, in one Lua call. Whichever process
flushes then *claims* everything there is: one Lua call renames the hour
hashes to keys of a numbered batch, atomically, so counts added afterwards go
to fresh hashes. The batch is folded into the buckets together with a
:class:`~tenancy.models.TenantStatsBatch` row, in one transaction, and only
then deleted from Redis. A process killed after its claim leaves the batch in
Redis; once its lease (:data:`CLAIM_LEASE` seconds) runs out, the next flush
folds it again, and the batch row makes that second fold add nothing if the
first one had committed.

The keys share one Redis Cluster hash tag: ``{<prefix>:stats}``.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import caches
from django.core.signals import setting_changed

from ..conf import tenancy_settings
from .counters import Pending

__all__ = [
    "CLAIM_LEASE",
    "Batch",
    "SharedCounts",
    "Snapshot",
    "shared_counts",
]

#: Seconds after which a claimed batch not yet folded is taken over by another flush.
CLAIM_LEASE = 30.0

# KEYS[1] the set of hour keys, KEYS[2..] hour keys; ARGV: groups of
# (index of the hour key in KEYS, tenant id, switches, requests, denials, last activity,
# last denial).
_ADD = """
for k = 2, #KEYS do redis.call('SADD', KEYS[1], KEYS[k]) end
for j = 1, #ARGV, 7 do
  local key, t = KEYS[tonumber(ARGV[j])], ARGV[j + 1]
  if ARGV[j + 2] ~= '0' then redis.call('HINCRBY', key, 's:' .. t, ARGV[j + 2]) end
  if ARGV[j + 3] ~= '0' then redis.call('HINCRBY', key, 'r:' .. t, ARGV[j + 3]) end
  if ARGV[j + 4] ~= '0' then redis.call('HINCRBY', key, 'd:' .. t, ARGV[j + 4]) end
  local old = redis.call('HGET', key, 'a:' .. t)
  if not old or tonumber(old) < tonumber(ARGV[j + 5]) then
    redis.call('HSET', key, 'a:' .. t, ARGV[j + 5])
  end
  if tonumber(ARGV[j + 6]) > 0 then
    local denied = redis.call('HGET', key, 'n:' .. t)
    if not denied or tonumber(denied) < tonumber(ARGV[j + 6]) then
      redis.call('HSET', key, 'n:' .. t, ARGV[j + 6])
    end
  end
end
return 1
"""

# KEYS: hour keys set, sequence, claims hash, epoch. ARGV: now, a fresh epoch, lease.
# Renames every hour hash into a new batch, and takes over batches whose lease ran
# out. Returns {epoch, {seq, {key, ...}}, ...}. A claim is "<claimed at> <key> <key>...".
_CLAIM = """
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  redis.call('SET', KEYS[4], ARGV[2])
  epoch = ARGV[2]
end
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[3])
local hours = redis.call('SMEMBERS', KEYS[1])
if #hours > 0 then
  local seq = redis.call('INCR', KEYS[2])
  local moved = {}
  for _, key in ipairs(hours) do
    if redis.call('EXISTS', key) == 1 then
      local dest = key .. ':b' .. seq
      redis.call('RENAME', key, dest)
      table.insert(moved, dest)
    end
  end
  redis.call('DEL', KEYS[1])
  if #moved > 0 then
    redis.call('HSET', KEYS[3], seq, '0 ' .. table.concat(moved, ' '))
  end
end
local out = {epoch}
local claims = redis.call('HGETALL', KEYS[3])
for i = 1, #claims, 2 do
  local keys = {}
  for word in string.gmatch(claims[i + 1], '%S+') do table.insert(keys, word) end
  if tonumber(keys[1]) < now - lease then
    keys[1] = tostring(now)
    redis.call('HSET', KEYS[3], claims[i], table.concat(keys, ' '))
    table.remove(keys, 1)
    table.insert(out, {claims[i], keys})
  end
end
return out
"""

# KEYS: hour keys set, sequence, claims hash, epoch. ARGV: a fresh epoch. Returns
# {epoch, seq, {key, fields, ...}, {seq, {key, fields, ...}, ...}}: all there is, at once.
_SNAPSHOT = """
redis.call('SET', KEYS[4], ARGV[1], 'NX')
local out = {redis.call('GET', KEYS[4]), redis.call('GET', KEYS[2]) or '0'}
local live = {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  table.insert(live, key)
  table.insert(live, redis.call('HGETALL', key))
end
out[3] = live
local claimed = {}
local claims = redis.call('HGETALL', KEYS[3])
for i = 1, #claims, 2 do
  local parts, first = {}, true
  for word in string.gmatch(claims[i + 1], '%S+') do
    if first then first = false else
      table.insert(parts, word)
      table.insert(parts, redis.call('HGETALL', word))
    end
  end
  table.insert(claimed, claims[i])
  table.insert(claimed, parts)
end
out[4] = claimed
return out
"""

# KEYS: claims hash. ARGV: seq, its keys. Ends the lease of a batch still claimed.
_RELEASE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], '0 ' .. ARGV[2])
end
return 1
"""

_FIELDS = {"s": "switches", "r": "requests", "d": "denied_requests"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse(key: str, fields: list[Any], into: dict[tuple[str, int], Pending]) -> None:
    """Add the counts of one hour hash (flat ``HGETALL`` reply) to *into*."""
    hour = int(key.split(":h:", 1)[1].split(":", 1)[0])
    for i in range(0, len(fields), 2):
        kind, _, tenant_id = _text(fields[i]).partition(":")
        value = _text(fields[i + 1])
        counts = into.setdefault((tenant_id, hour), Pending())
        if kind == "a":
            counts.last_activity = max(counts.last_activity, float(value))
        elif kind == "n":
            counts.last_denied = max(counts.last_denied, float(value))
        elif kind in _FIELDS:
            name = _FIELDS[kind]
            setattr(counts, name, getattr(counts, name) + int(value))


@dataclass
class Batch:
    """One claimed batch: its id in the database and its counts."""

    epoch: str
    seq: int
    keys: list[str]
    pending: dict[tuple[str, int], Pending] = field(default_factory=dict)


@dataclass
class Snapshot:
    """Everything in Redis at one moment: counts not claimed yet, and claimed batches."""

    epoch: str
    seq: int
    live: dict[tuple[str, int], Pending]
    claimed: dict[int, dict[tuple[str, int], Pending]]


def _redis_client(cache: Any) -> Any:
    """The redis-py client behind a Django cache, or None when it is not Redis."""
    from django.core.cache.backends.redis import RedisCache

    if isinstance(cache, RedisCache):
        return cache._cache.get_client(None, write=True)
    client = getattr(cache, "client", None)  # django-redis
    if client is not None and hasattr(client, "get_client"):
        return client.get_client(write=True)
    return None


class SharedCounts:
    """This process's access to the shared counts; one instance, :data:`shared_counts`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resolved = False
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._keys: dict[str, str] = {}

    def reset(self, **kwargs: Any) -> None:
        """Forget the client and keys (settings changed)."""
        with self._lock:
            self._resolved = False
            self._client = None
            self._scripts = {}

    def _resolve(self) -> Any:
        with self._lock:
            if self._resolved:
                return self._client
            alias = tenancy_settings.STATS_CACHE_ALIAS or tenancy_settings.CACHE_ALIAS
            wanted = tenancy_settings.STATS_SHARED
            client = None
            if wanted is not False:
                try:
                    cache = caches[alias]
                except Exception:
                    if wanted:
                        raise
                    cache = None  # check tenancy.E013 names the alias; count locally meanwhile
                client = _redis_client(cache) if cache is not None else None
                if client is None and wanted:
                    from django.core.exceptions import ImproperlyConfigured

                    raise ImproperlyConfigured(
                        f"TENANCY['STATS_SHARED'] is on but the cache {alias!r} is not Redis: "
                        "set STATS_CACHE_ALIAS to a Redis cache alias."
                    )
                prefix = ":".join(
                    part
                    for part in (
                        getattr(cache, "key_prefix", ""),
                        tenancy_settings.CACHE_KEY_PREFIX,
                    )
                    if part
                )
                tag = f"{{{prefix}:stats}}"
                self._keys = {name: f"{tag}:{name}" for name in ("hours", "seq", "claims", "epoch")}
                self._keys["hour"] = f"{tag}:h:"
            if client is not None:
                self._scripts = {
                    name: client.register_script(source)
                    for name, source in (
                        ("add", _ADD),
                        ("claim", _CLAIM),
                        ("snapshot", _SNAPSHOT),
                        ("release", _RELEASE),
                    )
                }
            self._client = client
            self._resolved = True
            return client

    @property
    def enabled(self) -> bool:
        """Whether counts go to a shared Redis (resolved once per settings change)."""
        if not self._resolved:
            self._resolve()
        return self._client is not None

    def _script(self, name: str) -> Any:
        if not self._resolved:
            self._resolve()
        return self._scripts[name]

    def _base_keys(self) -> list[str]:
        k = self._keys
        return [k["hours"], k["seq"], k["claims"], k["epoch"]]

    def add(self, pending: dict[tuple[str, int], Pending]) -> None:
        """Add *pending* to the shared hour hashes, in one Lua call (raises on a Redis error)."""
        if not pending:
            return
        script = self._script("add")
        keys = [self._keys["hours"]]
        index: dict[int, int] = {}
        args: list[Any] = []
        for (tenant_id, hour), counts in pending.items():
            if hour not in index:
                keys.append(f"{self._keys['hour']}{hour}")
                index[hour] = len(keys)
            args += [
                index[hour],
                tenant_id,
                counts.switches,
                counts.requests,
                counts.denied_requests,
                repr(counts.last_activity),
                repr(counts.last_denied),
            ]
        script(keys=keys, args=args)

    def claim(self) -> list[Batch]:
        """Claim every count not claimed yet, and batches whose lease ran out; read them."""
        reply = self._script("claim")(
            keys=self._base_keys(), args=[time.time(), secrets.token_hex(8), CLAIM_LEASE]
        )
        epoch = _text(reply[0])
        batches = [
            Batch(epoch, int(_text(seq)), [_text(key) for key in keys]) for seq, keys in reply[1:]
        ]
        if batches:
            pipe = self._client.pipeline(transaction=False)
            for batch in batches:
                for key in batch.keys:
                    pipe.hgetall(key)
            replies = iter(pipe.execute())
            for batch in batches:
                for key in batch.keys:
                    fields: list[Any] = []
                    for name, value in next(replies).items():
                        fields += [name, value]
                    _parse(key, fields, batch.pending)
        return batches

    def forget(self, batch: Batch) -> None:
        """Delete a batch folded into the database."""
        pipe = self._client.pipeline(transaction=True)
        if batch.keys:
            pipe.delete(*batch.keys)
        pipe.hdel(self._keys["claims"], batch.seq)
        pipe.execute()

    def release(self, batch: Batch) -> None:
        """End the lease of a batch whose write failed: the next flush, anywhere, retries it."""
        self._script("release")(keys=[self._keys["claims"]], args=[batch.seq, " ".join(batch.keys)])

    def snapshot(self) -> Snapshot:
        """Read every count in Redis, claimed or not, in one atomic call."""
        epoch, seq, live, claimed = self._script("snapshot")(
            keys=self._base_keys(), args=[secrets.token_hex(8)]
        )
        result = Snapshot(_text(epoch), int(_text(seq)), {}, {})
        for i in range(0, len(live), 2):
            _parse(_text(live[i]), live[i + 1], result.live)
        for i in range(0, len(claimed), 2):
            parts = claimed[i + 1]
            counts: dict[tuple[str, int], Pending] = {}
            for j in range(0, len(parts), 2):
                _parse(_text(parts[j]), parts[j + 1], counts)
            result.claimed[int(_text(claimed[i]))] = counts
        return result

    def clear(self) -> None:
        """Delete every shared statistics key (tests, and after a deliberate reset)."""
        if not self.enabled:
            return
        client = self._client
        tag = self._keys["hours"].rsplit(":", 1)[0]
        keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
        if keys:
            client.delete(*keys)


shared_counts = SharedCounts()
if hasattr(os, "register_at_fork"):
    # The lock may have been held at fork time; redis-py reconnects in the child by itself.
    os.register_at_fork(after_in_child=lambda: setattr(shared_counts, "_lock", threading.Lock()))


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("TENANCY", "CACHES"):
        shared_counts.reset()


setting_changed.connect(_settings_changed, dispatch_uid="tenancy.stats.shared.reset")
