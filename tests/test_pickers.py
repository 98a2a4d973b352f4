"""Pickers: exact properties where the policy promises them, statistical ones with fixed seeds."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers import (
    POLICIES,
    BalancerConfig,
    EmptyPicker,
    LeastConnectionsPicker,
    Picker,
    PowerOfTwoPicker,
    RandomPicker,
    RingHashPicker,
    RoundRobinPicker,
    SmoothWeightedPicker,
    build_picker,
    stable_hash,
)
from tests.conftest import ROOT

# The policies this file covers (POLICIES may list newer ones with their own tests).
CLASSIC = ("round_robin", "random", "weighted_round_robin", "least_connections", "p2c", "consistent_hash")


def endpoints(count: int, weights: Sequence[int] | None = None) -> list[Endpoint]:
    weights = weights if weights is not None else [1] * count
    assert len(weights) == count
    return [Endpoint(f"api/{i}", weight=w, index=i) for i, w in enumerate(weights)]


def indexes(picker: Picker, picks: int, key: str | None = None) -> list[int]:
    """The endpoint index of each of `picks` picks."""
    result = []
    for _ in range(picks):
        endpoint = picker.pick(key)
        assert endpoint is not None
        result.append(endpoint.index)
    return result


def longest_run(sequence: Sequence[int], value: int) -> int:
    return max((len(list(group)) for item, group in itertools.groupby(sequence) if item == value), default=0)


# --------------------------------------------------------------------------- endpoint


def test_endpoint_defaults_and_identity() -> None:
    endpoint = Endpoint("api/0")
    assert (endpoint.weight, endpoint.index, endpoint.healthy, endpoint.in_flight) == (1, 0, True, 0)
    # Pickers share endpoints with the balancer and compare them by identity.
    assert Endpoint("api/0") != endpoint
    assert endpoint == endpoint  # noqa: PLR0124


# --------------------------------------------------------------------------- round robin


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("start", [0, 2, 9])
def test_round_robin_is_exactly_even(count: int, start: int) -> None:
    rounds = 5
    picks = indexes(RoundRobinPicker(endpoints(count), start=start), rounds * count)
    assert Counter(picks) == dict.fromkeys(range(count), rounds)
    assert picks[:count] == [(start + i) % count for i in range(count)]
    assert picks == picks[:count] * rounds


def test_round_robin_ignores_weights_and_load() -> None:
    pool = endpoints(3, [1, 10, 0])
    pool[0].in_flight = 100
    assert indexes(RoundRobinPicker(pool), 6) == [0, 1, 2, 0, 1, 2]


def test_built_round_robin_starts_at_a_seeded_position_and_stays_even() -> None:
    pool = endpoints(5)
    picker = build_picker(BalancerConfig("round_robin"), pool, random.Random(3))
    assert isinstance(picker, RoundRobinPicker)
    first = random.Random(3).randrange(5)
    picks = indexes(picker, 50)
    assert picks[0] == first
    assert Counter(picks) == dict.fromkeys(range(5), 10)


# --------------------------------------------------------------------------- smooth weighted round robin


def test_weighted_5_1_1_is_nginx_sequence() -> None:
    picks = indexes(SmoothWeightedPicker(endpoints(3, [5, 1, 1])), 7 * 10)
    assert picks[:7] == [0, 0, 1, 0, 2, 0, 0]
    assert picks == picks[:7] * 10
    # Interleaved, not bursty: never five in a row, even across cycle boundaries (the
    # worst is the two at the end of one cycle plus the two at the start of the next).
    assert longest_run(picks[:7], 0) == 2
    assert longest_run(picks, 0) == 4


def test_weighted_1_2_5_as_in_the_shipped_scenario() -> None:
    picks = indexes(SmoothWeightedPicker(endpoints(3, [1, 2, 5])), 8 * 5)
    assert picks[:8] == [2, 1, 2, 0, 2, 2, 1, 2]
    assert Counter(picks) == {0: 5, 1: 10, 2: 25}
    assert longest_run(picks, 2) == 2


@pytest.mark.parametrize(
    "weights", [[1], [3, 1], [1, 1, 1, 1], [5, 1, 1], [2, 3, 5, 7], [10, 1], [100, 1, 50], [4, 6, 0, 2]]
)
def test_weighted_is_exact_over_any_window_of_one_cycle(weights: list[int]) -> None:
    total = sum(weights)
    picks = indexes(SmoothWeightedPicker(endpoints(len(weights), weights)), 3 * total)
    # The state returns to zero after one cycle, so the sequence has period `total` and
    # every window of `total` consecutive picks, wherever it starts, holds each exactly w times.
    assert picks == picks[:total] * 3
    for offset in range(total + 1):
        window = Counter(picks[offset : offset + total])
        assert [window[i] for i in range(len(weights))] == weights


@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=8).filter(lambda w: sum(w) > 0))
@settings(max_examples=150, deadline=None)
def test_weighted_cycle_property(weights: list[int]) -> None:
    total = sum(weights)
    picks = indexes(SmoothWeightedPicker(endpoints(len(weights), weights)), 2 * total)
    assert [picks[:total].count(i) for i in range(len(weights))] == weights
    assert picks[total:] == picks[:total]


def test_weighted_never_picks_zero_weight_endpoints() -> None:
    picks = indexes(SmoothWeightedPicker(endpoints(5, [0, 3, 0, 2, 0])), 500)
    assert Counter(picks) == {1: 300, 3: 200}


def test_weighted_with_only_zero_weights_picks_nothing() -> None:
    picker = SmoothWeightedPicker(endpoints(2, [0, 0]))
    assert picker.pick(None) is None
    assert picker.pick("key") is None


# --------------------------------------------------------------------------- random


def test_random_is_roughly_uniform() -> None:
    count, picks = 5, 50_000
    seen = Counter(indexes(RandomPicker(endpoints(count), random.Random(20240601)), picks))
    expected = picks / count
    chi_square = sum((seen[i] - expected) ** 2 / expected for i in range(count))
    assert set(seen) == set(range(count))
    assert chi_square < 18.47  # the 99.9th percentile of chi-square with 4 degrees of freedom


def test_random_follows_its_seed() -> None:
    pool = endpoints(4)
    first = indexes(RandomPicker(pool, random.Random(7)), 100)
    assert first == indexes(RandomPicker(pool, random.Random(7)), 100)
    assert first != indexes(RandomPicker(pool, random.Random(8)), 100)
    assert first[0] == random.Random(7).randrange(4)


# --------------------------------------------------------------------------- least connections


def test_least_connections_avoids_endpoints_that_hold_calls() -> None:
    pool = endpoints(4)
    for endpoint, load in zip(pool, [3, 0, 5, 1], strict=True):
        endpoint.in_flight = load
    assert indexes(LeastConnectionsPicker(pool), 20) == [1] * 20


def test_least_connections_reads_load_live() -> None:
    pool = endpoints(3)
    picker = LeastConnectionsPicker(pool)
    pool[0].in_flight = pool[1].in_flight = 2
    assert indexes(picker, 3) == [2, 2, 2]
    pool[2].in_flight = 9
    # Starts 0, 1, 2, 0: a start at the loaded api/2 wraps to the first of the tied pair.
    assert indexes(picker, 4) == [0, 1, 0, 0]


def test_least_connections_spreads_an_idle_cluster_from_a_rotating_start() -> None:
    picks = indexes(LeastConnectionsPicker(endpoints(4)), 12)
    assert picks == [0, 1, 2, 3] * 3


def test_least_connections_breaks_ties_at_the_first_tied_endpoint_after_the_start() -> None:
    pool = endpoints(4)
    for endpoint, load in zip(pool, [2, 0, 0, 2], strict=True):
        endpoint.in_flight = load
    picks = indexes(LeastConnectionsPicker(pool), 8)
    # start 0 -> api/1, start 1 -> api/1, start 2 -> api/2, start 3 -> wraps to api/1
    assert picks == [1, 1, 2, 1] * 2
    assert picks == indexes(LeastConnectionsPicker(pool), 8)  # deterministic


def test_least_connections_keeps_counts_level_as_calls_accumulate() -> None:
    pool = endpoints(5)
    picker = LeastConnectionsPicker(pool)
    for _ in range(53):
        endpoint = picker.pick(None)
        assert endpoint is not None
        endpoint.in_flight += 1
        loads = [e.in_flight for e in pool]
        assert max(loads) - min(loads) <= 1


# --------------------------------------------------------------------------- power of two choices


@pytest.mark.parametrize("count", [2, 3, 10])
def test_p2c_never_picks_the_single_loaded_endpoint_when_others_are_idle(count: int) -> None:
    pool = endpoints(count)
    pool[count // 2].in_flight = 10
    picks = indexes(PowerOfTwoPicker(pool, random.Random(1), choices=2), 2000)
    assert count // 2 not in picks
    assert set(picks) == set(range(count)) - {count // 2}


def test_p2c_with_all_choices_always_takes_the_least_loaded() -> None:
    pool = endpoints(3)
    for endpoint, load in zip(pool, [5, 0, 7], strict=True):
        endpoint.in_flight = load
    assert indexes(PowerOfTwoPicker(pool, random.Random(2), choices=3), 50) == [1] * 50
    # More choices than endpoints is clamped to all of them.
    assert indexes(PowerOfTwoPicker(pool, random.Random(2), choices=9), 50) == [1] * 50


def test_p2c_with_one_choice_is_random_picking() -> None:
    pool = endpoints(4)
    pool[0].in_flight = 100
    picks = indexes(PowerOfTwoPicker(pool, random.Random(5), choices=1), 4000)
    assert picks == indexes(RandomPicker(pool, random.Random(5)), 4000)
    assert all(900 < picks.count(i) < 1100 for i in range(4))  # load is ignored, even the loaded one


def test_p2c_prefers_lighter_endpoints_statistically() -> None:
    pool = endpoints(4)
    for endpoint, load in zip(pool, [0, 1, 2, 3], strict=True):
        endpoint.in_flight = load
    seen = Counter(indexes(PowerOfTwoPicker(pool, random.Random(9)), 6000))
    # Endpoint i wins when it is sampled with a heavier one: (3 - i) of the 6 pairs.
    for i in range(4):
        assert seen[i] == pytest.approx(6000 * (3 - i) / 6, abs=150)


# --------------------------------------------------------------------------- ring hash

KEYS = [f"user-{i}" for i in range(10_000)]


def owners(picker: Picker, keys: Sequence[str] = KEYS) -> dict[str, str]:
    result = {}
    for key in keys:
        endpoint = picker.pick(key)
        assert endpoint is not None
        result[key] = endpoint.name
    return result


def test_ring_hash_maps_a_key_to_the_same_endpoint_every_time() -> None:
    pool = endpoints(5)
    picker = RingHashPicker(pool, 1024)
    first = owners(picker, KEYS[:1000])
    assert owners(picker, KEYS[:1000]) == first
    # A rebuilt picker (what the balancer publishes) agrees, in any order of endpoints.
    assert owners(RingHashPicker(list(reversed(pool)), 1024), KEYS[:1000]) == first
    assert owners(RingHashPicker(endpoints(5), 1024), KEYS[:1000]) == first


def test_ring_hash_without_a_key_uses_a_fixed_point() -> None:
    picker = RingHashPicker(endpoints(5), 1024)
    assert len({picker.pick(None) for _ in range(20)}) == 1
    assert picker.pick(None) is picker.pick("")


def test_ring_hash_spreads_keys_over_all_endpoints() -> None:
    share = Counter(owners(RingHashPicker(endpoints(4), 1024)).values())
    assert set(share) == {"api/0", "api/1", "api/2", "api/3"}
    assert all(0.2 < count / len(KEYS) < 0.3 for count in share.values())


def test_ring_hash_weights_shift_the_key_share() -> None:
    share = Counter(owners(RingHashPicker(endpoints(2, [1, 3]), 1024)).values())
    assert share["api/1"] / len(KEYS) == pytest.approx(0.75, abs=0.04)


def test_ring_hash_small_ring_still_has_every_endpoint() -> None:
    share = Counter(owners(RingHashPicker(endpoints(3), 1)).values())
    assert set(share) == {"api/0", "api/1", "api/2"}


def test_ring_hash_restores_the_mapping_when_an_endpoint_returns() -> None:
    pool = endpoints(4)
    before = owners(RingHashPicker(pool, 1024))
    owners(RingHashPicker(pool[:3], 1024))
    assert owners(RingHashPicker(pool, 1024)) == before


def ring_without(removed: int, count: int = 4) -> tuple[str, dict[str, str], dict[str, str]]:
    """The removed endpoint's name and every key's owner before and after it leaves."""
    pool = endpoints(count)
    before = owners(RingHashPicker(pool, 1024))
    # The balancer keeps the ring over every configured endpoint and skips unusable ones.
    after = owners(RingHashPicker([e for e in pool if e.index != removed], 1024, universe=pool))
    return pool[removed].name, before, after


def test_ring_hash_keys_of_a_removed_endpoint_go_to_the_survivors() -> None:
    gone, before, after = ring_without(3)
    assert all(after[key] != gone for key in KEYS)
    assert {after[key] for key in KEYS if before[key] == gone} == {"api/0", "api/1", "api/2"}


def test_ring_hash_removing_one_of_n_moves_about_1_over_n_of_the_keys() -> None:
    _, before, after = ring_without(3)
    moved = sum(before[key] != after[key] for key in KEYS)
    assert moved / len(KEYS) <= 1 / 4 + 0.05


def test_ring_hash_removing_an_endpoint_moves_only_its_keys() -> None:
    """When one of N endpoints becomes unusable, only the keys it owned move."""
    gone, before, after = ring_without(3)
    strays = [key for key in KEYS if before[key] != gone and after[key] != before[key]]
    assert strays == []


# --------------------------------------------------------------------------- stable_hash


def test_stable_hash_known_values() -> None:
    assert stable_hash("") == 16476032584258269876
    assert stable_hash("user-42") == 8043651368623730598
    assert stable_hash("api/0_0") == 13761538411051959979
    assert stable_hash("ключ") == 5536099946253895712
    assert all(0 <= stable_hash(key) < 2**64 for key in KEYS[:100])


@pytest.mark.slow
def test_stable_hash_does_not_depend_on_pythonhashseed() -> None:
    code = "from meshsim.core.pickers import stable_hash; print(stable_hash('user-42'), hash('user-42'))"
    outputs = []
    for seed in ("0", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.append(result.stdout.split())
    (stable_0, builtin_0), (stable_1, builtin_1) = outputs
    assert stable_0 == stable_1 == str(stable_hash("user-42"))
    assert builtin_0 != builtin_1  # the seeds do change hash(), so the check above means something


# --------------------------------------------------------------------------- build_picker


@pytest.mark.parametrize("policy", POLICIES)
def test_no_endpoints_gives_the_empty_picker(policy: str) -> None:
    picker = build_picker(BalancerConfig(policy), [], random.Random(0))
    assert isinstance(picker, EmptyPicker)
    assert picker.pick(None) is None
    assert picker.pick("key") is None


@pytest.mark.parametrize(
    ("policy", "kind"),
    [
        ("round_robin", RoundRobinPicker),
        ("random", RandomPicker),
        ("weighted_round_robin", SmoothWeightedPicker),
        ("least_connections", LeastConnectionsPicker),
        ("p2c", PowerOfTwoPicker),
        ("consistent_hash", RingHashPicker),
    ],
)
def test_build_picker_per_policy(policy: str, kind: type) -> None:
    assert isinstance(build_picker(BalancerConfig(policy), endpoints(3), random.Random(0)), kind)


def test_build_picker_passes_choices_and_ring_size() -> None:
    pool = endpoints(3)
    for endpoint, load in zip(pool, [4, 4, 0], strict=True):
        endpoint.in_flight = load
    p2c = build_picker(BalancerConfig("p2c", choices=3), pool, random.Random(0))
    assert indexes(p2c, 20) == [2] * 20
    ring = build_picker(BalancerConfig("consistent_hash", ring_size=16), pool, random.Random(0))
    assert owners(ring, KEYS[:500]) == owners(RingHashPicker(pool, 16), KEYS[:500])


def test_the_classic_policies_are_offered() -> None:
    assert set(CLASSIC) <= set(POLICIES)


def test_build_picker_rejects_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown balancer policy 'fastest'"):
        build_picker(BalancerConfig("fastest"), endpoints(2), random.Random(0))


# --------------------------------------------------------------------------- every policy


@given(
    policy=st.sampled_from(CLASSIC),
    loads=st.lists(
        st.tuples(st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=5)),
        min_size=1,
        max_size=10,
    ),
    ring_size=st.integers(min_value=1, max_value=256),
    choices=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32),
    keys=st.lists(st.none() | st.text(max_size=8), min_size=1, max_size=20),
)
@settings(max_examples=120, deadline=None)
def test_every_policy_picks_one_of_the_given_endpoints(
    policy: str,
    loads: list[tuple[int, int]],
    ring_size: int,
    choices: int,
    seed: int,
    keys: list[str | None],
) -> None:
    pool = [Endpoint(f"svc/{i}", weight=w, index=i, in_flight=f) for i, (w, f) in enumerate(loads)]
    picker = build_picker(BalancerConfig(policy, ring_size, choices), pool, random.Random(seed))
    for key in keys * 2:
        picked = picker.pick(key)
        assert any(picked is endpoint for endpoint in pool)
