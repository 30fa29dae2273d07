"""Subscribe, this tree against another (A/B): which code costs less CPU a request.

bench_subscribe.py measures one tree against its ceiling; two of its runs one after the other
differ by ±25 % on a shared machine, more than most changes are worth. Here both trees serve at
once (a gunicorn each, 2 sync workers, its own freshly seeded database on the same PostgreSQL
server) and wrk loads them in turns of AB_SECONDS (default 6), AB_ROUNDS times (default 4),
the order alternating, subscribe then the bare hot-row ceiling on each: drift hits both trees
alike. Prints, per round and in total, requests/s and the CPU a request of the gunicorn
workers and their PostgreSQL backends, for both trees.

    bash scripts/with-postgres.sh .venv/bin/python benchmarks/ab_subscribe.py /path/to/base

The other tree is typically a worktree of the commit to compare with (with a .venv of its
own or a symlink to this one's); both trees must migrate to the same schema. Run it under
`flock /tmp/brickbook-bench.lock` like every benchmark.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness
from benchmarks.bench_subscribe import (
    CONNECTIONS,
    RESPONSE_TIMEOUT_SECONDS,
    THREADS,
    Measured,
    cpu_per_request,
    measured,
)

ROUNDS = int(os.environ.get("AB_ROUNDS", "4"))
SECONDS = int(os.environ.get("AB_SECONDS", "6"))
# Run by each tree's own Python in its own directory: its seed, its models.
SEED = """
import json, os, sys
sys.path.insert(0, os.getcwd())
from benchmarks.harness import django_in_process
django_in_process(os.environ["DATABASE_URL"])
from benchmarks.bench_subscribe import seed
offering_id, tokens = seed()
with open(sys.argv[1], "w") as out:
    out.write(json.dumps([offering_id, tokens]))
"""


def seeded(database_url: str, root: Path) -> tuple[int, str]:
    """Seed the tree's database with its own code: (offering id, a file of tokens)."""
    with tempfile.TemporaryDirectory() as folder:
        seed_file = Path(folder) / "seed.json"
        env = {**os.environ, "DATABASE_URL": database_url}
        python = str(root / ".venv" / "bin" / "python")
        subprocess.run([python, "-c", SEED, str(seed_file)], cwd=root, env=env, check=True)
        offering_id, tokens = json.loads(seed_file.read_text())
    with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as token_file:
        token_file.write("\n".join(tokens) + "\n")
    return int(offering_id), token_file.name


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    trees = {"other": Path(sys.argv[1]).resolve(), "this": harness.ROOT}
    lua, post = harness.ROOT / "benchmarks/subscribe.lua", harness.ROOT / "benchmarks/post.lua"
    results: dict[str, dict[str, list[Measured]]] = {
        name: {"sub": [], "ceil": []} for name in trees
    }
    with contextlib.ExitStack() as stack:
        setups: dict[str, tuple[str, int, str]] = {}
        for name, root in trees.items():
            url = stack.enter_context(harness.scratch_database(f"brickbook_ab_{name}"))
            offering_id, tokens = seeded(url, root)
            stack.callback(os.unlink, tokens)
            setups[name] = (
                stack.enter_context(harness.gunicorn(url, root=root)),
                offering_id,
                tokens,
            )

        def subscribe(name: str, seconds: int, run: str) -> harness.LoadResult:
            base, offering_id, tokens = setups[name]
            return harness.wrk(
                f"{base}/api/v1/offerings/{offering_id}/subscriptions",
                seconds=seconds,
                connections=CONNECTIONS,
                threads=THREADS,
                script=lua,
                script_args=[tokens, run, str(THREADS)],
                timeout_seconds=RESPONSE_TIMEOUT_SECONDS,
            )

        def ceiling(name: str, seconds: int) -> harness.LoadResult:
            return harness.wrk(
                f"{setups[name][0]}/bench/hot-update",
                seconds=seconds,
                connections=CONNECTIONS,
                threads=THREADS,
                script=post,
                timeout_seconds=RESPONSE_TIMEOUT_SECONDS,
            )

        for name in trees:  # warm up both workers of both servers, both paths
            ceiling(name, 2)
            subscribe(name, 2, "warm-up")
        for number in range(ROUNDS):
            order = list(trees) if number % 2 == 0 else list(reversed(trees))
            for name in order:
                base = setups[name][0]
                run = partial(subscribe, name, SECONDS, f"round-{number}")
                results[name]["sub"].append(measured(base, run))
            for name in reversed(order):
                base = setups[name][0]
                results[name]["ceil"].append(measured(base, partial(ceiling, name, SECONDS)))
            for name in trees:
                report(
                    f"round {number} {name}",
                    [results[name]["sub"][-1]],
                    [results[name]["ceil"][-1]],
                )
    for name, root in trees.items():
        report(f"{name} ({root})", results[name]["sub"], results[name]["ceil"])
    return 0


def report(label: str, subscribes: list[Measured], ceilings: list[Measured]) -> None:
    def rate(runs: list[Measured]) -> float:
        return sum(run.load.requests for run in runs) / sum(run.load.seconds for run in runs)

    python_ms, postgres_ms = cpu_per_request(subscribes)
    ceiling_python_ms, ceiling_postgres_ms = cpu_per_request(ceilings)
    subscribe_ms, ceiling_ms = python_ms + postgres_ms, ceiling_python_ms + ceiling_postgres_ms
    p99 = max((run.load.latency_p99 for run in subscribes), key=harness.milliseconds)
    print(
        f"{label}: subscribe {rate(subscribes):,.0f} req/s (p99 {p99}), CPU {python_ms:.2f} + "
        f"{postgres_ms:.2f} = {subscribe_ms:.2f} ms | ceiling {rate(ceilings):,.0f} req/s, CPU "
        f"{ceiling_python_ms:.2f} + {ceiling_postgres_ms:.2f} = {ceiling_ms:.2f} ms | ratio "
        f"{rate(subscribes) / rate(ceilings):.2f} (CPU {ceiling_ms / subscribe_ms:.2f})",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
