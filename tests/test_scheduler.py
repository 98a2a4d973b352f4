"""The private trio hooks sim mode relies on still exist and still do what we need."""

from __future__ import annotations

import trio
import trio.testing
from trio._core import _run

from meshsim.sim.scheduler import MockFastForward, available, deterministic_scheduling


def wake_order(tasks: int = 12) -> list[int]:
    """Run `tasks` tasks woken in one batch and return the order they ran in."""
    order: list[int] = []

    async def main() -> None:
        gate = trio.Event()

        async def worker(n: int) -> None:
            await gate.wait()
            order.append(n)

        async with trio.open_nursery() as nursery:
            for n in range(tasks):
                nursery.start_soon(worker, n)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()

    trio.run(main)
    return order


def test_private_names_exist() -> None:
    assert available()
    assert hasattr(_run, "GLOBAL_RUN_CONTEXT")


def test_seeded_scheduling_replays_the_same_order() -> None:
    with deterministic_scheduling(1):
        first = wake_order()
    with deterministic_scheduling(1):
        second = wake_order()
    assert first == second
    assert sorted(first) == list(range(12))


def test_different_seeds_shuffle_differently() -> None:
    orders = set()
    for seed in range(5):
        with deterministic_scheduling(seed):
            orders.add(tuple(wake_order()))
    assert len(orders) > 1


def test_previous_state_is_restored() -> None:
    flag = _run._ALLOW_DETERMINISTIC_SCHEDULING
    state = _run._r.getstate()
    with deterministic_scheduling(99):
        assert _run._ALLOW_DETERMINISTIC_SCHEDULING is True
    assert flag == _run._ALLOW_DETERMINISTIC_SCHEDULING
    assert _run._r.getstate() == state


def test_fast_forward_sees_other_deadlines_and_moves_the_clock() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    seen: dict[str, float] = {}

    async def main() -> None:
        fast_forward = MockFastForward(clock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 5.0)
            await trio.testing.wait_all_tasks_blocked()
            seen["horizon"] = fast_forward.horizon()
            seen["runnable"] = float(fast_forward.others_runnable())
            fast_forward.jump_to(2.0)
            seen["now"] = trio.current_time()
            seen["later"] = trio.current_time()

    trio.run(main, clock=clock)
    assert seen == {"horizon": 5.0, "runnable": 0.0, "now": 2.0, "later": 2.0}
