"""Shared state (core.state): every test runs on MemoryState and on RedisState (`state` fixture)."""
from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from core.state import LockTimeout, MemoryState, RedisState, StateStore, make_state

TTL = 0.2


async def _until_gone(state: StateStore, key: str, limit: float = 2.0) -> None:
    """Wait for a key to expire; fails instead of hanging if it never does."""
    async with asyncio.timeout(limit):
        while await state.get_json(key) is not None:
            await asyncio.sleep(0.02)


async def test_protocol_and_factory():
    memory = make_state(None)
    assert isinstance(memory, MemoryState) and isinstance(memory, StateStore)
    redis_state = make_state("redis://127.0.0.1:1/0")  # constructing does not connect
    assert isinstance(redis_state, RedisState) and isinstance(redis_state, StateStore)
    assert redis_state.namespace == "fatoura:"
    await redis_state.close()


async def test_set_get_roundtrip(state: StateStore):
    assert await state.ping() is True
    assert await state.get_json("chat:tg:1") is None
    value = {"step": "pick_invoice", "invoices": ["A1", "B2"], "n": 3, "ok": True, "x": None,
             "label": "فاتورة é"}
    await state.set_json("chat:tg:1", value)
    assert await state.get_json("chat:tg:1") == value
    assert await state.ttl("chat:tg:1") is None  # no expiry
    got = await state.get_json("chat:tg:1")
    got["step"] = "changed"  # a copy: mutating it does not touch the store
    assert (await state.get_json("chat:tg:1"))["step"] == "pick_invoice"
    await state.set_json("chat:tg:1", [1, 2])
    assert await state.get_json("chat:tg:1") == [1, 2]


async def test_set_expires(state: StateStore):
    await state.set_json("k", {"a": 1}, ttl=TTL)
    left = await state.ttl("k")
    assert left is not None and 0 < left <= TTL
    assert await state.get_json("k") == {"a": 1}
    await _until_gone(state, "k")
    assert await state.ttl("k") is None
    # overwriting without ttl removes the expiry
    await state.set_json("k", 1, ttl=TTL)
    await state.set_json("k", 2)
    await asyncio.sleep(TTL + 0.05)
    assert await state.get_json("k") == 2


async def test_rejects_non_json_and_bad_ttl(state: StateStore):
    with pytest.raises(TypeError, match="JSON"):
        await state.set_json("k", {"amount": Decimal("10.00")})
    assert await state.get_json("k") is None
    with pytest.raises(ValueError):
        await state.set_json("k", 1, ttl=0)
    with pytest.raises(ValueError):
        await state.add_once("k", ttl=-1)


async def test_delete(state: StateStore):
    await state.set_json("a", 1)
    await state.set_json("b", 2)
    assert await state.delete("a", "b", "missing") == 2
    assert await state.get_json("a") is None and await state.get_json("b") is None
    assert await state.delete() == 0


async def test_add_once(state: StateStore):
    assert await state.add_once("upd:tg:42", TTL) is True
    assert await state.add_once("upd:tg:42", TTL) is False
    assert await state.add_once("upd:tg:43", TTL) is True
    await _until_gone(state, "upd:tg:42")
    assert await state.add_once("upd:tg:42", TTL) is True


async def test_add_once_is_atomic(state: StateStore):
    results = await asyncio.gather(*(state.add_once("upd:same", 5) for _ in range(50)))
    assert results.count(True) == 1


async def test_incr_fixed_window(state: StateStore):
    assert await state.incr("fail:tg:1", TTL) == 1
    first_ttl = await state.ttl("fail:tg:1")
    await asyncio.sleep(0.05)
    assert await state.incr("fail:tg:1", TTL) == 2
    assert await state.incr("fail:tg:1", TTL) == 3
    # later increments do not push the window: it still ends TTL after the first one
    assert await state.ttl("fail:tg:1") < first_ttl
    assert await state.get_json("fail:tg:1") == 3
    await _until_gone(state, "fail:tg:1")
    assert await state.incr("fail:tg:1", TTL) == 1


async def test_incr_is_atomic(state: StateStore):
    counts = await asyncio.gather(*(state.incr("c", 5) for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))


async def test_incr_on_non_counter(state: StateStore):
    await state.set_json("c", {"not": "a counter"})
    with pytest.raises(TypeError):
        await state.incr("c", 5)


async def test_delete_prefix_only_that_prefix(state: StateStore):
    for key in ("chat:tg:1", "chat:tg:1:lang", "chat:tg:1:link", "chat:tg:12", "chat:wa:1", "x"):
        await state.set_json(key, key)
    await state.incr("chat:tg:1:fails", 60)
    assert await state.delete_prefix("chat:tg:1:") == 3
    assert await state.get_json("chat:tg:1:lang") is None
    for key in ("chat:tg:1", "chat:tg:12", "chat:wa:1", "x"):
        assert await state.get_json(key) == key
    assert await state.delete_prefix("nothing:") == 0


async def test_delete_prefix_glob_characters_are_literal(state: StateStore):
    await state.set_json("a*b:1", 1)
    await state.set_json("aXb:1", 2)
    await state.set_json("a[b]:1", 3)
    await state.set_json("ab:1", 4)
    assert await state.delete_prefix("a*b") == 1
    assert await state.delete_prefix("a[b]") == 1
    assert await state.get_json("aXb:1") == 2 and await state.get_json("ab:1") == 4


async def test_delete_prefix_keeps_held_locks(state: StateStore):
    await state.set_json("chat:1", 1)
    async with state.lock("chat:1"):
        assert await state.delete_prefix("") >= 1
        with pytest.raises(LockTimeout):
            async with state.lock("chat:1", blocking_timeout=0.05):
                pass


async def test_lock_fifo_and_exclusive(state: StateStore):
    order: list[int] = []
    inside = 0
    max_inside = 0

    async def handler(i: int) -> None:
        nonlocal inside, max_inside
        async with state.lock("chat:tg:7"):
            inside += 1
            max_inside = max(max_inside, inside)
            order.append(i)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(handler(i) for i in range(20)))
    assert order == list(range(20))
    assert max_inside == 1


async def test_lock_different_keys_run_concurrently(state: StateStore):
    entered = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def handler(mine: str, other: str) -> None:
        async with state.lock(f"chat:{mine}"):
            entered[mine].set()
            # Only returns if the other key's holder is inside at the same time.
            await asyncio.wait_for(entered[other].wait(), 2)

    await asyncio.gather(handler("a", "b"), handler("b", "a"))


async def test_lock_released_on_error_and_cancel(state: StateStore):
    with pytest.raises(RuntimeError):
        async with state.lock("k"):
            raise RuntimeError("handler failed")
    async with state.lock("k", blocking_timeout=1):
        pass

    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with state.lock("k"):
            holding.set()
            await release.wait()

    async def waiter() -> None:
        async with state.lock("k"):
            pass

    h = asyncio.create_task(holder())
    await holding.wait()
    w = asyncio.create_task(waiter())
    await asyncio.sleep(0.02)
    w.cancel()  # cancelled while queued
    with pytest.raises(asyncio.CancelledError):
        await w
    release.set()
    await h
    async with state.lock("k", blocking_timeout=1):
        pass
    assert len(state._locks) == 0


async def test_lock_blocking_timeout(state: StateStore):
    async with state.lock("k"):
        with pytest.raises(LockTimeout):
            async with state.lock("k", blocking_timeout=0.05):
                pass
    async with state.lock("k", blocking_timeout=0.05):
        pass


async def test_lock_map_does_not_grow(state: StateStore):
    sem = asyncio.Semaphore(40)

    async def use(i: int) -> None:
        async with sem, state.lock(f"chat:tg:{i}"):
            await asyncio.sleep(0)

    await asyncio.gather(*(use(i) for i in range(10_000)))
    assert len(state._locks) == 0
    if isinstance(state, RedisState):
        assert [k async for k in state.redis.scan_iter(match=state.namespace + "lock:*")] == []


async def test_expired_keys_do_not_pile_up(state: StateStore):
    for i in range(1000):
        assert await state.add_once(f"upd:{i}", 0.05)
    await asyncio.sleep(0.1)
    await state.get_json("anything")  # any call purges what has expired
    if isinstance(state, MemoryState):
        assert len(state._data) == 0 and len(state._expiries) == 0
    else:
        assert [k async for k in state.redis.scan_iter(match=state.namespace + "kv:upd:*")] == []


async def test_memory_expiry_heap_stays_bounded():
    state = MemoryState()
    for i in range(20_000):
        await state.set_json(f"chat:{i % 10}", i, ttl=3600)  # the same 10 keys, rewritten
    assert len(state._data) == 10
    assert len(state._expiries) <= 2 * 10 + 1024 + 1
    await state.set_json("chat:0", "last", ttl=0.05)
    await asyncio.sleep(0.06)
    assert await state.get_json("chat:0") is None and await state.get_json("chat:1") == 19_991


async def test_memory_ttl_uses_injected_clock():
    now = [1000.0]
    state = MemoryState(clock=lambda: now[0])
    await state.set_json("k", 1, ttl=10)
    assert await state.incr("n", 10) == 1
    now[0] += 9.5
    assert await state.get_json("k") == 1 and await state.ttl("k") == pytest.approx(0.5)
    assert await state.incr("n", 10) == 2
    now[0] += 0.5
    assert await state.get_json("k") is None and await state.ttl("k") is None
    assert await state.incr("n", 10) == 1


# --------------------------------------------------------------------------- Redis only


@pytest.fixture
async def two_processes(redis_url):
    """Two RedisState instances with their own connections: two processes, one Redis."""
    namespace = f"fatoura:test:{uuid.uuid4().hex[:12]}:"
    a = RedisState(redis_url, namespace=namespace)
    b = RedisState(redis_url, namespace=namespace)
    yield a, b
    leftovers = [k async for k in a.redis.scan_iter(match=namespace + "*")]
    if leftovers:
        await a.redis.delete(*leftovers)
    await a.close()
    await b.close()


async def test_redis_instances_share_data(two_processes):
    a, b = two_processes
    await a.set_json("chat:tg:1", {"step": "menu"})
    assert await b.get_json("chat:tg:1") == {"step": "menu"}
    assert await a.add_once("upd:1", 5) is True
    assert await b.add_once("upd:1", 5) is False
    assert await a.incr("n", 5) == 1 and await b.incr("n", 5) == 2
    assert await b.delete_prefix("chat:") == 1 and await a.get_json("chat:tg:1") is None


async def test_redis_lock_excludes_other_instance(two_processes):
    a, b = two_processes
    async with a.lock("chat:tg:1"):
        with pytest.raises(LockTimeout):
            async with b.lock("chat:tg:1", blocking_timeout=0.1):
                pass
        async with b.lock("chat:tg:2", blocking_timeout=0.5):  # other chats are free
            pass

    # Handlers spread over both "processes" never overlap on one chat.
    inside = 0
    max_inside = 0
    done = 0

    async def handler(store: RedisState) -> None:
        nonlocal inside, max_inside, done
        async with store.lock("chat:tg:1", blocking_timeout=5):
            inside += 1
            max_inside = max(max_inside, inside)
            await asyncio.sleep(0.002)
            inside -= 1
            done += 1

    await asyncio.gather(*(handler(a if i % 2 else b) for i in range(20)))
    assert (max_inside, done) == (1, 20)


async def test_redis_lock_lease_expires_and_token_protects(two_processes):
    a, b = two_processes
    async with a.lock("chat:tg:1", timeout=0.15):
        # a "dies" holding the lock: b gets it once the lease runs out
        async with b.lock("chat:tg:1", timeout=5, blocking_timeout=2):
            pass
        async with b.lock("chat:tg:1", timeout=5, blocking_timeout=2):
            # a's late release must not free the lock b now holds
            pass
    async with b.lock("chat:tg:1", timeout=5):
        # hold b while a (whose lease is long gone) tries: excluded
        with pytest.raises(LockTimeout):
            async with a.lock("chat:tg:1", blocking_timeout=0.05):
                pass


async def test_redis_late_release_keeps_new_holders_lock(two_processes):
    a, b = two_processes
    b_inside = asyncio.Event()
    a_done = asyncio.Event()

    async def a_slow() -> None:
        async with a.lock("chat:tg:1", timeout=0.1):
            await b_inside.wait()  # runs past its lease while b holds the lock
        a_done.set()

    async def b_next() -> None:
        await asyncio.sleep(0.01)
        async with b.lock("chat:tg:1", timeout=5, blocking_timeout=2):
            b_inside.set()
            await a_done.wait()  # a released (late) while we hold the lock
            assert await a.redis.exists(b.namespace + "lock:chat:tg:1") == 1

    await asyncio.gather(a_slow(), b_next())
