"""Simulator throughput: meshsim against a plain SimPy model of the same mesh, in one process.

The model: one service of 100 replicas with no capacity limit and exponential service
times, one open-loop client sending Poisson arrivals through round robin, no deadline,
no health checks, no faults. Both sides use the same rate and mean service time, record
every call's latency and status, and compute p50/p99 at the end; both are timed with
`time.perf_counter()` from the start of the run to the finished summary. meshsim's time
is `run_scenario()` (simulation and report); the scenario is loaded before the clock
starts.

    .venv/bin/python benchmarks/sim_throughput.py               # 1,000,000 calls
    .venv/bin/python benchmarks/sim_throughput.py --calls 20000 # a smoke run

Figures and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import gc
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import attrs
import simpy

from meshsim.core.scenario_loader import load_scenario
from meshsim.sim.runner import run_scenario

DEFAULT_CALLS = 1_000_000
DEFAULT_RATE = 10_000.0  # calls per simulated second
DEFAULT_MEAN = 0.010  # seconds of mean service time: about rate * mean = 100 calls in flight
REPLICAS = 100
OK = 0  # the status every call of this model ends with (gRPC OK, as meshsim's StatusCode.OK)
TARGET_RATIO = 1.0


@attrs.frozen
class Model:
    """What both simulators run; `duration` is chosen so that `rate * duration == calls`."""

    calls: int
    rate: float
    mean: float
    seed: int
    replicas: int = REPLICAS

    @property
    def duration(self) -> float:
        return self.calls / self.rate


@attrs.frozen
class Result:
    simulator: str
    wall: float  # seconds
    calls: int
    ok: int
    p50_ms: float
    p99_ms: float

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.wall


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence, as meshsim's report computes it."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


# --- meshsim ------------------------------------------------------------------------------


def scenario_toml(model: Model) -> str:
    return f"""\
schema = "meshsim/v1"
name = "sim_throughput"
description = "benchmark: {model.replicas} replicas, round robin, Poisson arrivals, exponential service"
seed = {model.seed}
duration = {model.duration!r}

[[service]]
name = "api"
replicas = {model.replicas}
latency = {{ dist = "exponential", mean = "{model.mean * 1e3:g}ms" }}

[balancer]
policy = "round_robin"

[health]
enabled = false

[[client]]
name = "load"
rate = {model.rate!r}
"""


def run_meshsim(model: Model) -> Result:
    with tempfile.TemporaryDirectory(prefix="meshsim-bench-") as directory:
        path = Path(directory) / "sim_throughput.toml"
        path.write_text(scenario_toml(model), encoding="utf-8")
        scenario = load_scenario(path)
    began = time.perf_counter()
    report = run_scenario(scenario)
    wall = time.perf_counter() - began
    totals = report.totals
    return Result("meshsim", wall, totals.requests, totals.ok, totals.latency.p50, totals.latency.p99)


# --- SimPy --------------------------------------------------------------------------------


def run_simpy(model: Model) -> Result:
    """The same mesh as a textbook SimPy model: a source process and one process per call."""
    began = time.perf_counter()
    env = simpy.Environment()
    service_rate = 1.0 / model.mean
    replica_rngs = [random.Random(f"{model.seed}/replica:{i}") for i in range(model.replicas)]
    latencies: list[float] = []
    statuses: list[int] = []
    replicas: list[int] = []

    def call(replica: int) -> Generator[simpy.Event, None, None]:
        started = env.now
        yield env.timeout(replica_rngs[replica].expovariate(service_rate))
        latencies.append(env.now - started)
        statuses.append(OK)
        replicas.append(replica)

    def source() -> Generator[simpy.Event, None, None]:
        rng = random.Random(f"{model.seed}/client")
        next_replica = 0
        while True:
            yield env.timeout(rng.expovariate(model.rate))
            if env.now >= model.duration:
                return
            env.process(call(next_replica))
            next_replica = (next_replica + 1) % model.replicas

    env.process(source())
    env.run()
    ordered = sorted(latencies)
    by_status = collections.Counter(statuses)
    per_replica = collections.Counter(replicas)
    wall = time.perf_counter() - began
    assert sum(per_replica.values()) == len(ordered)
    return Result(
        "simpy", wall, len(ordered), by_status[OK], percentile(ordered, 50) * 1e3, percentile(ordered, 99) * 1e3
    )


# --- the run ------------------------------------------------------------------------------


def timed(run: Callable[[Model], Result], model: Model) -> Result:
    """One side, starting from a collected heap, so that neither pays for the other's garbage."""
    gc.collect()
    result = run(model)
    gc.collect()
    return result


def check(result: Result, model: Model) -> list[str]:
    """Problems with a result: a Poisson count stays within a few standard deviations of its mean."""
    problems = []
    slack = 6 * math.sqrt(model.calls) + 1
    if abs(result.calls - model.calls) > slack:
        expected = f"{model.calls:,} ± {slack:,.0f}"
        problems.append(f"{result.simulator}: simulated {result.calls:,} calls, expected {expected}")
    if result.ok != result.calls:
        problems.append(f"{result.simulator}: {result.calls - result.ok:,} of {result.calls:,} calls did not end OK")
    return problems


def render(model: Model, results: list[Result]) -> str:
    lines = [
        f"model: {model.replicas} replicas, round robin, Poisson arrivals at {model.rate:g}/s, "
        f"exponential service mean {model.mean * 1e3:g} ms, {model.duration:g} s simulated "
        f"(~{model.calls:,} calls), seed {model.seed}",
        f"python {sys.version.split()[0]}, simpy {simpy.__version__}",
        "",
        f"{'simulator':<10} {'wall s':>9} {'calls':>11} {'calls/wall s':>13} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for r in results:
        figures = f"{r.wall:>9.2f} {r.calls:>11,} {r.calls_per_second:>13,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
        lines.append(f"{r.simulator:<10} {figures}")
    sides = {r.simulator: r for r in results}
    if "meshsim" in sides and "simpy" in sides:
        ratio = sides["meshsim"].wall / sides["simpy"].wall
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        lines += ["", f"ratio meshsim_wall / simpy_wall = {ratio:.2f} (target <= {TARGET_RATIO:g}: {verdict})"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="calls to simulate (default %(default)s)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="arrivals per simulated second")
    parser.add_argument("--mean", type=float, default=DEFAULT_MEAN, help="mean service time in seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only", choices=("meshsim", "simpy"), help="run one simulator (for profiling); no ratio is printed"
    )
    args = parser.parse_args(argv)
    if args.calls < 1 or args.rate <= 0 or args.mean <= 0:
        parser.error("--calls, --rate and --mean must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model = Model(calls=args.calls, rate=args.rate, mean=args.mean, seed=args.seed)
    sides: dict[str, Callable[[Model], Result]] = {"meshsim": run_meshsim, "simpy": run_simpy}
    results = [timed(run, model) for name, run in sides.items() if args.only in (None, name)]
    print(render(model, results))
    problems = [problem for result in results for problem in check(result, model)]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
