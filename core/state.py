"""Shared key-value state: conversation state, per-chat locks, update dedupe, brute-force counters.

Two backends with one interface (`StateStore`):

- `MemoryState`: in-process dicts. For one process (`fatoura demo`, tests). TTLs use
  `time.monotonic` and are purged lazily (a heap of expiry times is drained on every call), so
  keys nobody reads again (dedupe markers, counters) do not pile up.
- `RedisState`: `redis.asyncio`, for any number of web/worker processes sharing one Redis.

`make_state(settings.redis_url)` picks one. Values are JSON: `set_json` raises `TypeError` for
anything `json.dumps` refuses (Decimal, datetime, ...); converting them is the caller's job.
Values come back as fresh objects: mutating what `get_json` returned changes nothing stored.

Redis layout (namespace defaults to ``fatoura:``): values and counters live at
``<namespace>kv:<key>``, locks at ``<namespace>lock:<key>``, so `delete_prefix` never drops a
lock somebody holds.

`lock(key)` serialises holders of one key and lets different keys run concurrently. Within a
process, waiters of one key are queued on an `asyncio.Lock` (FIFO: arrival order is kept and
nobody spins); with Redis, only the head of that queue then takes the cross-process lock
(SET NX PX with a random token, released by a compare-and-delete script). Idle per-key locks
are dropped as soon as nobody holds or waits for them, so the map stays as large as the number
of keys in use right now.
"""
from __future__ import annotations

import asyncio
import heapq
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "fatoura:"


class LockTimeout(TimeoutError):
    """`lock(key, blocking_timeout=...)` could not acquire the lock in time."""


@runtime_checkable
class StateStore(Protocol):
    async def get_json(self, key: str) -> Any | None: ...

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None: ...

    async def delete(self, *keys: str) -> int: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def add_once(self, key: str, ttl: float) -> bool: ...

    async def incr(self, key: str, ttl: float) -> int: ...

    async def ttl(self, key: str) -> float | None: ...

    def lock(
        self, key: str, timeout: float = 30, blocking_timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- helpers


def _dumps(key: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(
            f"state value for {key!r} is not JSON-serialisable ({exc}); "
            "convert Decimal, datetime and other objects to str/int/float/list/dict first"
        ) from None


def _check_ttl(ttl: float | None, *, required: bool = False) -> None:
    if ttl is None:
        if required:
            raise ValueError("ttl is required")
        return
    if not ttl > 0:
        raise ValueError(f"ttl must be positive seconds, got {ttl!r}")


def _ms(seconds: float) -> int:
    return max(1, int(round(seconds * 1000)))


@dataclass
class _KeyEntry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders + waiters


class _KeyedLocks:
    """One FIFO `asyncio.Lock` per key, dropped when its last holder/waiter leaves."""

    def __init__(self) -> None:
        self._entries: dict[str, _KeyEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def acquire(self, key: str) -> _KeyEntry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _KeyEntry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:
            self._leave(key, entry)
            raise
        return entry

    def release(self, key: str, entry: _KeyEntry) -> None:
        entry.lock.release()
        self._leave(key, entry)

    def _leave(self, key: str, entry: _KeyEntry) -> None:
        entry.users -= 1
        if entry.users == 0 and self._entries.get(key) is entry:
            del self._entries[key]


# --------------------------------------------------------------------------- memory


class MemoryState:
    """In-process store. Correct for one process only (locks and data are not shared)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[str, float | None]] = {}  # key -> (json, expires_at)
        self._expiries: list[tuple[float, str]] = []  # heap; entries may be stale
        self._locks = _KeyedLocks()

    # internal ---------------------------------------------------------------

    def _purge(self) -> float:
        now = self._clock()
        heap = self._expiries
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            item = self._data.get(key)
            if item is not None and item[1] == at:
                del self._data[key]
        return now

    def _live(self, key: str) -> tuple[str, float | None] | None:
        now = self._purge()
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= now:
            del self._data[key]
            return None
        return item

    def _put(self, key: str, raw: str, ttl: float | None) -> None:
        if ttl is None:
            self._data[key] = (raw, None)
            return
        at = self._clock() + ttl
        self._data[key] = (raw, at)
        heapq.heappush(self._expiries, (at, key))
        if len(self._expiries) > 2 * len(self._data) + 1024:
            # Keys rewritten with a TTL leave stale heap entries behind; rebuild from live data.
            self._expiries = [(t, k) for k, (_, t) in self._data.items() if t is not None]
            heapq.heapify(self._expiries)

    # interface --------------------------------------------------------------

    async def get_json(self, key: str) -> Any | None:
        item = self._live(key)
        return None if item is None else json.loads(item[0])

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        raw = _dumps(key, value)
        self._purge()
        self._put(key, raw, ttl)

    async def delete(self, *keys: str) -> int:
        deleted = 0
        for key in keys:
            if self._live(key) is not None:
                del self._data[key]
                deleted += 1
        return deleted

    async def delete_prefix(self, prefix: str) -> int:
        now = self._purge()
        doomed = [k for k in self._data if k.startswith(prefix)]
        live = 0
        for key in doomed:
            _, at = self._data.pop(key)
            if at is None or at > now:
                live += 1
        return live

    async def add_once(self, key: str, ttl: float) -> bool:
        _check_ttl(ttl, required=True)
        if self._live(key) is not None:
            return False
        self._put(key, "1", ttl)
        return True

    async def incr(self, key: str, ttl: float) -> int:
        _check_ttl(ttl, required=True)
        item = self._live(key)
        if item is None:
            self._put(key, "1", ttl)
            return 1
        raw, at = item
        value = json.loads(raw)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"state key {key!r} does not hold an integer counter")
        value += 1
        if at is None:  # a plain value turned counter: give it the window now, like RedisState
            self._put(key, str(value), ttl)
        else:
            self._data[key] = (str(value), at)
        return value

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None or item[1] is None:
            return None
        return max(0.0, item[1] - self._clock())

    def lock(
        self, key: str, timeout: float = 30, blocking_timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Per-key FIFO lock. `timeout` (the lease) has no meaning in one process and is
        ignored; `blocking_timeout` bounds the wait (then `LockTimeout`)."""
        return self._lock(key, blocking_timeout)

    @asynccontextmanager
    async def _lock(self, key: str, blocking_timeout: float | None) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(blocking_timeout):
                entry = await self._locks.acquire(key)
        except TimeoutError:
            raise LockTimeout(f"lock {key!r} not acquired within {blocking_timeout}s") from None
        try:
            yield
        finally:
            self._locks.release(key, entry)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()
        self._expiries.clear()


# --------------------------------------------------------------------------- redis

_INCR_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisState:
    """Store shared by every process connected to the same Redis (and namespace).

    Built from a URL it owns its client (a blocking pool of `max_connections`); given a
    `client` (which must use ``decode_responses=True``) it leaves closing it to the caller.
    """

    _POLL_MIN = 0.002
    _POLL_MAX = 0.05

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        client: aioredis.Redis | None = None,
        max_connections: int = 50,
    ) -> None:
        if client is None:
            if not url:
                raise ValueError("RedisState needs a Redis URL or a client")
            # A blocking pool: a burst of chats waits for a free connection instead of failing
            # with "Too many connections" as redis-py's default pool does past its limit.
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=20, decode_responses=True
            )
            client = aioredis.Redis.from_pool(pool)
            self._owns_client = True
        else:
            self._owns_client = False
        self.redis = client
        self.namespace = namespace
        self._kv = f"{namespace}kv:"
        self._lk = f"{namespace}lock:"
        self._locks = _KeyedLocks()
        self._background: set[asyncio.Task[Any]] = set()
        self._incr_script = client.register_script(_INCR_WINDOW)
        self._release_script = client.register_script(_RELEASE)

    def _k(self, key: str) -> str:
        return self._kv + key

    async def get_json(self, key: str) -> Any | None:
        raw = await self.redis.get(self._k(key))
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        raw = _dumps(key, value)
        await self.redis.set(self._k(key), raw, px=None if ttl is None else _ms(ttl))

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self.redis.delete(*(self._k(k) for k in keys)))

    async def delete_prefix(self, prefix: str) -> int:
        pattern = _glob_escape(self._k(prefix)) + "*"
        deleted = 0
        batch: list[str] = []
        async for name in self.redis.scan_iter(match=pattern, count=500):
            batch.append(name)
            if len(batch) >= 500:
                deleted += int(await self.redis.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(await self.redis.unlink(*batch))
        return deleted

    async def add_once(self, key: str, ttl: float) -> bool:
        _check_ttl(ttl, required=True)
        return bool(await self.redis.set(self._k(key), "1", px=_ms(ttl), nx=True))

    async def incr(self, key: str, ttl: float) -> int:
        _check_ttl(ttl, required=True)
        try:
            return int(await self._incr_script(keys=[self._k(key)], args=[_ms(ttl)]))
        except aioredis.ResponseError as exc:
            raise TypeError(f"state key {key!r} does not hold an integer counter ({exc})") from None

    async def ttl(self, key: str) -> float | None:
        ms = await self.redis.pttl(self._k(key))
        return None if ms < 0 else ms / 1000

    def lock(
        self, key: str, timeout: float = 30, blocking_timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Per-key lock across processes. `timeout` is the lease: a holder that dies (or runs
        longer) loses the lock after that many seconds. `blocking_timeout` bounds the wait."""
        _check_ttl(timeout, required=True)
        return self._lock(key, timeout, blocking_timeout)

    @asynccontextmanager
    async def _lock(
        self, key: str, timeout: float, blocking_timeout: float | None
    ) -> AsyncIterator[None]:
        name = self._lk + key
        token = secrets.token_hex(16)
        try:
            async with asyncio.timeout(blocking_timeout):
                # Queue behind this process's other waiters first: FIFO, and only one of them polls.
                entry = await self._locks.acquire(key)
                try:
                    await self._acquire(name, token, timeout)
                except BaseException:
                    self._locks.release(key, entry)
                    raise
        except TimeoutError:
            raise LockTimeout(f"lock {key!r} not acquired within {blocking_timeout}s") from None
        try:
            yield
        finally:
            try:
                if not await self._release_script(keys=[name], args=[token]):
                    log.warning("state lock %r expired before release: the holder ran past "
                                "its %ss lease", key, timeout)
            finally:
                self._locks.release(key, entry)

    async def _acquire(self, name: str, token: str, timeout: float) -> None:
        delay = self._POLL_MIN
        try:
            while not await self.redis.set(name, token, px=_ms(timeout), nx=True):
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._POLL_MAX)
        except asyncio.CancelledError:
            # The SET may have reached Redis before the cancellation: give back what we may hold.
            task = asyncio.ensure_future(self._release_script(keys=[name], args=[token]))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._owns_client:
            await self.redis.aclose()


def make_state(redis_url: str | None, *, namespace: str = DEFAULT_NAMESPACE) -> StateStore:
    """RedisState when a Redis URL is configured, MemoryState otherwise."""
    if redis_url:
        return RedisState(redis_url, namespace=namespace)
    return MemoryState()
