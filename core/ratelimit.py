"""Send-rate limits shared by every worker: Redis when the state store is Redis, memory otherwise.

A limit is a key and an interval (30 messages per second per bot = 1/30 s between two sends).
Each key keeps the time its next slot opens (GCRA's "theoretical arrival time"). `reserve` books
one slot on every key of a message at once and says how long to sleep before sending:

- the first key (the bot's) queues: the slot may be up to `max_wait` seconds ahead, so many
  senders share the bot's rate by taking consecutive slots, spaced exactly one interval apart;
- the other keys (the chat's) must be free by then, else nothing is booked and the answer says
  when the chat is free, so a busy chat never holds back the bot's slots for the other chats.

With Redis the booking is one Lua script (atomic, Redis' own clock), so any number of processes
ride one limit together without going over it.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.state import MemoryState, RedisState, StateStore


@dataclass(frozen=True)
class Rate:
    key: str
    interval: float  # seconds between two sends on this key

    @classmethod
    def per_second(cls, key: str, count: float) -> "Rate":
        return cls(key, 1.0 / count)

    @classmethod
    def per_minute(cls, key: str, count: float) -> "Rate":
        return cls(key, 60.0 / count)


@dataclass(frozen=True)
class Booking:
    booked: bool
    wait: float  # booked: sleep this long, then send; not booked: try again in this long


class Limiter(Protocol):
    async def reserve(self, rates: Sequence[Rate], cost: int = 1, max_wait: float = 1.0) -> Booking: ...

    async def hold(self, rate: Rate, seconds: float) -> None: ...


def _decide(now: float, tats: list[float], rates: Sequence[Rate], cost: int,
            max_wait: float) -> tuple[Booking, list[float] | None]:
    start = max(now, tats[0])
    blocked = max(tats[1:], default=now)
    if blocked > start:
        return Booking(False, blocked - now), None
    if start - now > max_wait:
        return Booking(False, start - now), None
    return Booking(True, start - now), [start + rate.interval * cost for rate in rates]


class MemoryLimiter:
    """For one process: the same booking rule over a dict."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}

    async def reserve(self, rates: Sequence[Rate], cost: int = 1, max_wait: float = 1.0) -> Booking:
        now = self._clock()
        booking, new = _decide(now, [self._tats.get(r.key, 0.0) for r in rates], rates, cost, max_wait)
        if new is not None:
            for rate, tat in zip(rates, new):
                self._tats[rate.key] = tat
        if len(self._tats) > 50_000:  # forget keys whose slot is long past
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return booking

    async def hold(self, rate: Rate, seconds: float) -> None:
        self._tats[rate.key] = max(self._tats.get(rate.key, 0.0), self._clock() + seconds)


# KEYS: the rates' keys; ARGV: cost, max_wait (ms), then one interval (ms) per key.
# Returns {booked (0/1), wait (ms, as a string: Lua numbers lose their fraction in replies)}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local blocked = now
for i = 2, #KEYS do
  blocked = math.max(blocked, tonumber(redis.call('GET', KEYS[i]) or '0'))
end
if blocked > start then return {0, tostring(blocked - now)} end
if start - now > max_wait then return {0, tostring(start - now)} end
for i = 1, #KEYS do
  local tat = start + tonumber(ARGV[2 + i]) * cost
  redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
end
return {1, tostring(start - now)}
"""

_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = math.max(now + tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return 1
"""


class RedisLimiter:
    """For many processes: the booking is a Lua script run atomically by Redis."""

    def __init__(self, state: RedisState) -> None:
        self._redis = state.redis
        self._prefix = state.namespace + "rate:"
        self._reserve = self._redis.register_script(_RESERVE)
        self._hold = self._redis.register_script(_HOLD)

    async def reserve(self, rates: Sequence[Rate], cost: int = 1, max_wait: float = 1.0) -> Booking:
        keys = [self._prefix + rate.key for rate in rates]
        args = [cost, max_wait * 1000, *(rate.interval * 1000 for rate in rates)]
        booked, wait = await self._reserve(keys=keys, args=args)
        return Booking(bool(int(booked)), max(0.0, float(wait) / 1000))

    async def hold(self, rate: Rate, seconds: float) -> None:
        await self._hold(keys=[self._prefix + rate.key], args=[seconds * 1000])


def make_limiter(state: StateStore | None) -> Limiter:
    if isinstance(state, RedisState):
        return RedisLimiter(state)
    if state is not None and not isinstance(state, MemoryState):
        raise TypeError(f"no rate limiter for {type(state).__name__}")
    return MemoryLimiter()


async def wait_for_slot(limiter: Limiter, rates: Sequence[Rate], cost: int = 1, max_wait: float = 1.0,
                        sleep: Callable[[float], object] = asyncio.sleep) -> Booking:
    """Book a slot; when booked, sleep until it opens. Returns the booking (not booked: the caller
    puts the message back for `booking.wait` seconds)."""
    booking = await limiter.reserve(rates, cost, max_wait)
    if booking.booked and booking.wait > 0:
        await sleep(booking.wait)
    return booking
