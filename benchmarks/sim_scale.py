"""Simulator at scale: CPU per simulated call from 10 to 10,000 replicas, every LB policy, health on.

The model: one service of N replicas with no capacity limit and exponential service
times (mean 10 ms), one open-loop client sending Poisson arrivals at 10,000 calls per
simulated second, health checks on with the scenario defaults (the grpc preset: Watch,
a 1 s interval, a Check when a stream has been silent for an interval), no faults.
A cell is the marginal CPU (`time.process_time()`) of `run_scenario()` (simulation and
report) per call: a run of 2N calls less one of N, so the replicas' setup is apart;
each run the least of three. Then what a probe costs against a call (health on less
health off at 10,000 replicas), and the large run: 1,000,000 calls over 1,000 replicas,
health on, in a child process, so that its peak RSS (`ru_maxrss` of the child) is its own.

    .venv/bin/python benchmarks/sim_scale.py                          # all of it
    .venv/bin/python benchmarks/sim_scale.py --calls 5000 --no-big    # a smoke run
    .venv/bin/python benchmarks/sim_scale.py --only-big               # the large run

Figures and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from meshsim.core.pickers import POLICIES
from meshsim.core.scenario_loader import load_scenario
from meshsim.sim.runner import run_scenario

RATE = 10_000.0  # calls per simulated second
MEAN_MS = 10.0
SIZES = (10, 100, 1_000, 10_000)
TARGET_GROWTH = 1.5
BIG_CALLS = 1_000_000
BIG_REPLICAS = 1_000
BIG_SECONDS = 30.0
BIG_RSS_MIB = 1024.0
PROBE_REPLICAS = 1_000


def scenario_toml(replicas: int, policy: str, calls: int, seed: int, health: bool = True) -> str:
    return f"""\
schema = "meshsim/v1"
name = "sim_scale"
description = "benchmark: {replicas} replicas, {policy}, health on"
seed = {seed}
duration = {calls / RATE!r}

[[service]]
name = "api"
replicas = {replicas}
latency = {{ dist = "exponential", mean = "{MEAN_MS:g}ms" }}

[balancer]
policy = "{policy}"

[health]
enabled = {str(health).lower()}

[[client]]
name = "load"
rate = {RATE!r}
"""


# Each run is timed this many times and the least CPU kept: on a shared machine a run only ever
# takes longer than it needs, and a difference of two runs (the marginal cost) doubles the noise.
REPEAT = 3


def measure(
    replicas: int, policy: str, calls: int, seed: int, health: bool = True, repeat: int = REPEAT
) -> tuple[float, int]:
    """The least CPU seconds of `repeat` runs, and the calls a run simulated."""
    with tempfile.TemporaryDirectory(prefix="meshsim-scale-") as directory:
        path = Path(directory) / "sim_scale.toml"
        path.write_text(scenario_toml(replicas, policy, calls, seed, health), encoding="utf-8")
        scenario = load_scenario(path)
    best = float("inf")
    simulated = 0
    for _ in range(repeat):
        gc.collect()
        began = time.process_time()
        report = run_scenario(scenario)
        best = min(best, time.process_time() - began)
        simulated = report.totals.requests
    return best, simulated


def marginal(replicas: int, policy: str, calls: int, seed: int, health: bool = True) -> tuple[float, float]:
    """µs of CPU per call of the run beyond a first `calls` (a run of `calls`, then one of twice as
    many: the difference is what the calls cost, without the replicas' setup), and the setup's
    seconds (what the first run took beyond its calls at that rate)."""
    short, short_calls = measure(replicas, policy, calls, seed, health)
    long, long_calls = measure(replicas, policy, 2 * calls, seed, health)
    per_call = (long - short) / max(1, long_calls - short_calls)
    return per_call * 1e6, max(0.0, short - per_call * short_calls)


def table(sizes: Sequence[int], policies: Sequence[str], calls: int, seed: int) -> list[str]:
    lines = [
        f"µs of CPU per simulated call, health on: the calls of a run of {2 * calls:,} beyond those of one of "
        f"{calls:,} (Poisson at {RATE:g}/s); setup: the rest of the shorter run, in seconds",
        "",
        f"{'policy':<22}" + "".join(f"{n:>9,}" for n in sizes) + f"{'growth':>8}" + f"{'setup s':>9}",
    ]
    worst = 0.0
    for policy in policies:
        cells = []
        setup = 0.0
        for replicas in sizes:
            per_call, setup = marginal(replicas, policy, calls, seed)
            cells.append(per_call)
        growth = cells[-1] / cells[0]
        worst = max(worst, growth)
        lines.append(f"{policy:<22}" + "".join(f"{c:>9.1f}" for c in cells) + f"{growth:>7.2f}x" + f"{setup:>9.2f}")
        print(lines[-1], file=sys.stderr, flush=True)
    verdict = "met" if worst <= TARGET_GROWTH else "NOT met"
    lines += [
        "",
        f"worst growth {sizes[0]:,} -> {sizes[-1]:,} replicas: {worst:.2f}x (target <= {TARGET_GROWTH}: {verdict});"
        f" setup is of the largest size",
    ]
    return lines


def probe_cost(replicas: int, calls: int, seed: int) -> list[str]:
    """What a simulated health probe costs: the marginal CPU of a run with health checks on, less
    one with them off, over the probes the extra simulated time holds (one per replica per
    interval, the defaults' 1 s: the Watch is silent, so each interval's Check goes out)."""
    on, _ = marginal(replicas, "round_robin", calls, seed, health=True)
    off, _ = marginal(replicas, "round_robin", calls, seed, health=False)
    probes_per_call = replicas / RATE  # probes a simulated second / calls a simulated second
    per_probe = (on - off) / probes_per_call
    verdict = "met" if per_probe <= off else "NOT met"
    return [
        f"a simulated probe at {replicas:,} replicas: {per_probe:.1f} µs of CPU against {off:.1f} µs a call "
        f"(health off; target: a probe costs no more than a call: {verdict})"
    ]


def big_child(calls: int, replicas: int, seed: int) -> None:
    """Run in a child process: print the run's CPU seconds and calls as JSON (one run, not the least
    of several: the peak RSS is the point, and a million calls take long enough)."""
    cpu, simulated = measure(replicas, "round_robin", calls, seed, repeat=1)
    print(json.dumps({"cpu": cpu, "calls": simulated}))


def big(calls: int, replicas: int, seed: int) -> list[str]:
    child = [sys.executable, __file__, "--big-child", "--calls", str(calls), "--replicas", str(replicas)]
    out = subprocess.run([*child, "--seed", str(seed)], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB on Linux
    cpu, simulated = result["cpu"], result["calls"]
    ok = cpu < BIG_SECONDS and rss_mib < BIG_RSS_MIB
    return [
        f"{simulated:,} calls over {replicas:,} replicas, round robin, health on: "
        f"{cpu:.1f} s CPU ({cpu / simulated * 1e6:.1f} µs a call), peak RSS {rss_mib:,.0f} MiB "
        f"(target < {BIG_SECONDS:g} s and < {BIG_RSS_MIB:g} MiB: {'met' if ok else 'NOT met'})"
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=None, help="calls of the shorter run of a cell (default 30,000)")
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES), help="replica counts, comma-separated")
    parser.add_argument("--policies", default=",".join(POLICIES), help="LB policies, comma-separated")
    parser.add_argument("--replicas", type=int, default=BIG_REPLICAS, help="replicas of the large run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-big", action="store_true", help="skip the 1,000,000-call run")
    parser.add_argument("--only-big", action="store_true", help="only the 1,000,000-call run")
    parser.add_argument("--big-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.big_child:
        big_child(args.calls or BIG_CALLS, args.replicas, args.seed)
        return 0
    lines = [f"python {sys.version.split()[0]}", ""]
    if not args.only_big:
        sizes = [int(n) for n in args.sizes.split(",")]
        policies = [p for p in args.policies.split(",") if p]
        lines += table(sizes, policies, args.calls or 20_000, args.seed)
    if not args.only_big and max(int(n) for n in args.sizes.split(",")) >= PROBE_REPLICAS:
        # Below thousands of replicas a call's worth of time holds too few probes to measure one.
        lines += ["", *probe_cost(max(int(n) for n in args.sizes.split(",")), args.calls or 20_000, args.seed)]
    if not args.no_big:
        lines += [
            "",
            *big(BIG_CALLS if args.calls is None or not args.only_big else args.calls, args.replicas, args.seed),
        ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
