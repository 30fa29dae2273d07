"""Shared benchmark plumbing: a scratch PostgreSQL database, a gunicorn server, wrk load.

Every figure is printed with its ratio to a ceiling measured in the same run on the same
machine, because absolute numbers vary between machines and ratios don't (much).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


# Read once: a benchmark later points DATABASE_URL at its scratch database for Django.
_SERVER_URL = os.environ.get("DATABASE_URL", "")


def _server_url() -> str:
    url = _SERVER_URL
    if not url.startswith("postgres"):
        sys.exit("benchmarks need DATABASE_URL=postgres://… (run them with `make bench`)")
    return url


def _drop_database(name: str) -> None:
    with psycopg.connect(_server_url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(name: str, *, settings_module: str | None = None) -> Iterator[str]:
    """A fresh database on the PostgreSQL server from DATABASE_URL, migrated (with
    `settings_module`'s apps if given, e.g. benchmarks.settings_hordak); dropped after."""
    server = urlparse(_server_url())
    _drop_database(name)
    with psycopg.connect(_server_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunparse(server._replace(path=f"/{name}"))
    env = {**os.environ, "DATABASE_URL": url}
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    try:
        yield url
    finally:
        _drop_database(name)


@contextlib.contextmanager
def database_copy(source_url: str, name: str) -> Iterator[str]:
    """A copy of the database at `source_url` (which must have no open connection), made by
    copying its files (CREATE DATABASE … TEMPLATE, FILE_COPY: seconds, where a reload takes a
    minute), dropped after: several timed runs that each start from the same data."""
    source = urlparse(source_url).path.lstrip("/")
    _drop_database(name)
    with psycopg.connect(_server_url(), autocommit=True) as admin:
        version = admin.info.server_version
        strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""  # the default before 15
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"{strategy}')
    try:
        yield urlunparse(urlparse(source_url)._replace(path=f"/{name}"))
    finally:
        _drop_database(name)


def django_in_process(database_url: str, *, settings_module: str = "config.settings") -> None:
    """Set Django up in this process against `database_url`, as production runs it: DEBUG off
    (no query log), one persistent connection, `transaction.on_commit` callbacks run at commit
    (a script is not inside a test transaction)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ["DEBUG"] = "0"
    os.environ["CONN_MAX_AGE"] = "600"
    import django

    django.setup()


def verdict(ratio: float, goal: float, *, at_most: bool = False) -> str:
    """Whether `ratio` meets `goal`: at least `goal`, or at most it for a ratio of times."""
    met = ratio <= goal if at_most else ratio >= goal
    if at_most:
        return ("meets" if met else "ABOVE") + f" goal ≤ {goal:.2f}"
    return ("meets" if met else "BELOW") + f" goal ≥ {goal:.2f}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(database_url: str, *, workers: int = 2, root: Path = ROOT) -> Iterator[str]:
    """gunicorn with sync workers and persistent DB connections, as in production, serving
    the tree at `root` (another checkout, with its own .venv, for A/B runs)."""
    binary = Path(PYTHON).parent / "gunicorn" if root == ROOT else root / ".venv/bin/gunicorn"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BRICKBOOK_BENCH_ENDPOINTS": "1",
        "DEBUG": "0",
        "CONN_MAX_AGE": "600",
        "LOG_LEVEL": "ERROR",
    }
    process = subprocess.Popen(
        [
            str(binary),
            "--config",
            "python:config.gunicorn",
            "config.wsgi",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=root,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    _SERVERS[base] = (process.pid, database_url)
    try:
        _wait_until_up(f"{base}/api/v1/health")
        yield base
    finally:
        del _SERVERS[base]
        process.terminate()
        process.wait(timeout=30)


# base URL → (gunicorn master's pid, its database), while `gunicorn()` runs it
_SERVERS: dict[str, tuple[int, str]] = {}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuUsed:
    """CPU seconds used so far (user + system) by each process serving a benchmark: the
    gunicorn workers, and the PostgreSQL backends connected to its database (empty when
    PostgreSQL runs on another machine). Unlike requests per second, CPU per request hardly
    depends on what else the shared machine is doing."""

    workers: dict[int, float]
    backends: dict[int, float]

    def since(self, earlier: CpuUsed) -> tuple[float, float]:
        """(workers' seconds, backends' seconds) used since `earlier`."""
        return _used_since(self.workers, earlier.workers), _used_since(
            self.backends, earlier.backends
        )


def _used_since(now: dict[int, float], earlier: dict[int, float]) -> float:
    return sum(seconds - earlier.get(pid, 0.0) for pid, seconds in now.items())


def cpu_used(base: str) -> CpuUsed:
    """CPU used so far by the gunicorn serving `base` (from `gunicorn()`) and its database's
    backends (Linux /proc; the backends only when PostgreSQL runs on this machine)."""
    master, database_url = _SERVERS[base]
    workers = {pid: _cpu_seconds(pid) for pid in _children_of(master)}
    with psycopg.connect(database_url, autocommit=True) as connection:
        pids = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    backends = {pid: _cpu_seconds(pid) for (pid,) in pids}
    return CpuUsed(
        {pid: s for pid, s in workers.items() if s is not None},
        {pid: s for pid, s in backends.items() if s is not None},
    )


def _cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # gone, or not on this machine
    fields = stat.rsplit(")", 1)[1].split()  # after "(command)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def server_cpu_seconds(backend_pid: int) -> float:
    """CPU seconds used so far by the whole PostgreSQL server `backend_pid` belongs to: its
    postmaster, every live child (backends, background workers) and, through the postmaster's
    cutime/cstime, every child that has exited — so backends of connections opened and closed
    in between count too (a pay run pays on several)."""
    postmaster = _parent_of(backend_pid)
    if postmaster is None:
        return 0.0
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(value) for value in fields[11:15]) / _CLOCK_TICKS  # utime stime cutime cstime
    return own + sum(_cpu_seconds(child) or 0.0 for child in _children_of(postmaster))


def _children_of(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(entry.name))
    return children


def _wait_until_up(url: str, timeout_seconds: float = 30) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not come up")


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    requests: int
    errors: int  # non-2xx/3xx responses plus socket errors
    latency_p99: str  # as wrk prints it, e.g. "12.34ms"
    latency_p50: str = ""
    latency_p90: str = ""
    non_2xx: int = 0
    socket_errors: int = 0
    seconds: float = 0.0  # how long wrk actually ran

    @property
    def p99_milliseconds(self) -> float:
        return milliseconds(self.latency_p99)


_LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def milliseconds(latency: str) -> float:
    """wrk's latency text ("850.00us", "12.34ms", "1.02s", "2.00m") in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", latency.strip())
    if not found:
        raise ValueError(f"not a wrk latency: {latency!r}")
    return float(found.group(1)) * _LATENCY_UNITS[found.group(2)]


def wrk(
    url: str,
    *,
    seconds: int = 10,
    connections: int = 8,
    threads: int = 2,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    script_args: list[str] | None = None,
    timeout_seconds: int | None = None,
) -> LoadResult:
    """Load `url` from a second process (wrk) on loopback for a bounded time. `script`: a wrk
    Lua script (e.g. to POST, or to vary headers and body per request), given `script_args`
    after `--`. `timeout_seconds`: when wrk gives up on a response and counts a socket error
    (wrk's default is 2 s, short for a slow endpoint under 32 connections' queueing)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run the benchmarks with `make bench`, which installs it")
    header_args = [
        arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")
    ]
    output = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            *(["--timeout", f"{timeout_seconds}s"] if timeout_seconds else []),
            *header_args,
            *(["--script", str(script)] if script else []),
            url,
            *(["--", *script_args] if script_args else []),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60 + (timeout_seconds or 0),
    ).stdout
    rps = float(_match(r"Requests/sec:\s+([\d.]+)", output))
    requests = int(_match(r"(\d+) requests in", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    refused = int(non_2xx.group(1)) if non_2xx else 0
    failed = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    ran = re.search(r"requests in ([\d.]+)(us|ms|s|m|h),", output)
    return LoadResult(
        rps,
        requests,
        refused + failed,
        _percentile(99, output),
        latency_p50=_percentile(50, output),
        latency_p90=_percentile(90, output),
        non_2xx=refused,
        socket_errors=failed,
        seconds=milliseconds("".join(ran.groups())) / 1000 if ran else float(seconds),
    )


def _percentile(percent: int, output: str) -> str:
    """A line of wrk's "Latency Distribution" table ("     99%   12.34ms"), anchored at the
    line's start: the thread statistics above it end in percentages too ("72.99%")."""
    return _match(rf"(?m)^\s+{percent}%\s+(\S+)\s*$", output)


def _match(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if not found:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return found.group(1)


def report(name: str, figure: LoadResult, ceiling: LoadResult, *, goal: float | None) -> bool:
    ratio = figure.requests_per_second / ceiling.requests_per_second
    if goal is None:
        verdict = "no goal"
    else:
        verdict = ("meets" if ratio >= goal else "BELOW") + f" goal {goal:.2f}"
    print(
        f"{name}: {figure.requests_per_second:,.0f} req/s "
        f"(p99 {figure.latency_p99}, {figure.errors} errors) | ceiling "
        f"{ceiling.requests_per_second:,.0f} req/s (p99 {ceiling.latency_p99}) | "
        f"ratio {ratio:.2f} ({verdict})"
    )
    return figure.errors == 0 and ceiling.errors == 0
