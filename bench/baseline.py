"""Measure a git ref against this working tree in one run on one machine (bench helper).

Numbers from two runs, or two machines, differ by more than most changes we want to judge, so
bench/load.py and bench/engine.py take ``--baseline REF`` and measure both sides together,
alternating between them.  The ref is checked out with ``git worktree add --detach`` into a
temporary directory (removed again with ``git worktree remove --force``, also on SIGTERM), and
its code is run by putting ``<worktree>/daemon`` first on PYTHONPATH: the venv's editable
install is a ``.pth`` entry for this tree's ``daemon/``, and PYTHONPATH comes before
site-packages on ``sys.path``.  Everything else (the venv's packages, the tests/ harness, the
bench script itself) stays this tree's, so only the daemon's code differs.  :func:`sides`
checks in a subprocess where ``import sambertd`` really lands instead of trusting that.

The second half is bench/load.py's load generator for cheap requests: wrk on a CPU of its
own, the server side pinned to the others, so that a row measures the server and not a
client fighting it for the same core.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
HEAD_LABEL = "HEAD"  # the working tree, uncommitted changes included


@dataclass(frozen=True)
class Side:
    """One column: a label, what to add to a child's environment, where sambertd must be."""

    label: str
    package: Path
    env: dict[str, str] = field(default_factory=dict)


def git(*args: str, check: bool = True) -> str:
    """Run git in this repository (bounded: a worktree checkout takes seconds)."""
    done = subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=300
    )
    if check and done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as SystemExit, so the finally blocks remove the worktree and stop daemons."""
    raise SystemExit(128 + signum)


@contextmanager
def worktree(ref: str) -> Iterator[tuple[Path, str]]:
    """(checkout of ``ref``, its short hash) in a temporary detached worktree."""
    sha = git("rev-parse", "--short", f"{ref}^{{commit}}")
    previous = signal.signal(signal.SIGTERM, _terminate)
    with tempfile.TemporaryDirectory(prefix="sambertd-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), sha)
        try:
            yield tree, sha
        finally:
            git("worktree", "remove", "--force", str(tree), check=False)
            signal.signal(signal.SIGTERM, previous)


def overrides(side: Side) -> dict[str, str]:
    """The side's variables, its PYTHONPATH entries before any this process already has
    (DaemonProcess's ``env=`` replaces a variable rather than extending it)."""
    out = dict(side.env)
    if "PYTHONPATH" in out and os.environ.get("PYTHONPATH"):
        out["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    return out


def child_env(side: Side) -> dict[str, str]:
    """This process's environment with the side's variables on top."""
    return {**os.environ, **overrides(side)}


def source_of(side: Side) -> Path:
    """Where ``import sambertd`` lands for this side (run from the repository root, like
    tests/daemon.py's DaemonProcess runs ``python -m sambertd``)."""
    out = subprocess.run(
        [sys.executable, "-c", "import sambertd; print(sambertd.__file__)"],
        cwd=REPO,
        env=child_env(side),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return Path(out.stdout.strip()).resolve()


def verified(side: Side) -> Side:
    """The side, after checking (and printing) that its sambertd comes from its tree."""
    found = source_of(side)
    if not found.is_relative_to(side.package.resolve()):
        raise SystemExit(f"{side.label}: sambertd imports from {found}, not {side.package}")
    print(f"{side.label:<14} sambertd from {found}")
    return side


@contextmanager
def sides(ref: str | None) -> Iterator[list[Side]]:
    """``[baseline, HEAD]`` with a ref, ``[HEAD]`` without; the worktree lives as long as the
    ``with`` block."""
    head = Side(HEAD_LABEL, REPO / "daemon")
    if ref is None:
        yield [verified(head)]
        return
    with worktree(ref) as (tree, sha):
        base = Side(f"base {sha}", tree / "daemon", {"PYTHONPATH": str(tree / "daemon")})
        yield [verified(base), verified(head)]


def order(both: Sequence[Side], index: int) -> list[Side]:
    """Baseline first for even configurations, HEAD first for odd ones (ABBA): a drift in
    the machine, or whatever the first run warms up, then favours neither side."""
    return list(both) if index % 2 == 0 else list(reversed(both))


def number(value: float | None) -> str:
    """A value with the digits its size deserves (RTFs ~0.03, req/s ~1000s; counts whole)."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


# (metric, "higher"/"lower"/"" = which direction is better, baseline value, HEAD value)
Metric = tuple[str, str, float | None, float | None]


def compare(rows: Sequence[tuple[str, Sequence[Metric]]], labels: Sequence[str]) -> None:
    """Print baseline, HEAD and HEAD/baseline for every metric of every row."""
    header = f"{'row':<30} {'metric':<8} {labels[0]:>14} {labels[1]:>12} {'HEAD/base':>10}  better"
    print(header)
    print("-" * len(header))
    for name, metrics in rows:
        for i, (metric, better, base, head) in enumerate(metrics):
            ratio = f"{head / base:.3f}" if base and head is not None else "-"
            print(
                f"{name if i == 0 else '':<30} {metric:<8} {number(base):>14} "
                f"{number(head):>12} {ratio:>10}  {better}"
            )


# Load generation on its own core (bench/load.py's fixed-body rows).

# One wrk thread.  request() counts what it sends and stops the thread after ``cap`` (a
# response() hook would do it by answers, but makes wrk copy every body into Lua: ~10% off
# the bare row); init() starts a monotonic clock (LuaJIT's ffi), because wrk itself sleeps
# until -d and divides by that.  done() prints one JSON line with wrk's p50/p95/p99.
WRK_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local function now_us()
  local t = ffi.new("bench_timespec")
  ffi.C.clock_gettime(1, t)
  return tonumber(t.tv_sec) * 1e6 + tonumber(t.tv_nsec) / 1e3
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[@BODY@]==]
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  cap, sent, started, capped_us = tonumber(args[1]), 0, now_us(), 0
  prepared = wrk.format()
end
function request()
  sent = sent + 1
  if sent > cap and capped_us == 0 then
    capped_us = now_us() - started
    wrk.thread:stop()
  end
  return prepared
end
function done(summary, latency, requests)
  local capped = 0
  for _, t in ipairs(threads) do capped = math.max(capped, t:get("capped_us")) end
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "capped_us": %d, '
    .. '"status_errors": %d, "socket_errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, capped, e.status, e.connect + e.read + e.write
    + e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def rss_mb(pid: int) -> float:
    """A process's resident memory now (MB), as the benches report it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class Pins:
    """CPUs for the load generator and for the server side; empty: not pinned."""

    client: tuple[int, ...] = ()
    server: tuple[int, ...] = ()

    def taskset(self) -> list[str]:
        return ["taskset", "-c", ",".join(map(str, self.client))] if self.client else []

    def describe(self) -> str:
        if not self.client:
            return "pinning: none (wrk rows share the CPUs with the server)"
        return (
            f"pinning: wrk on CPU {','.join(map(str, self.client))} (taskset -c); daemon, bare "
            f"server and redis on CPU {','.join(map(str, self.server))}; Python-client rows "
            "unpinned"
        )


def choose_pins(enabled: bool) -> Pins:
    """The last CPU for wrk, the rest for the server (nothing to split below 2 CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    return Pins((cpus[-1],), tuple(cpus[:-1])) if enabled and len(cpus) >= 2 else Pins()


@contextmanager
def pinned(cpus: tuple[int, ...]) -> Iterator[None]:
    """Processes started inside inherit ``cpus``: DaemonProcess and RedisServer take no
    affinity of their own, and pinning a started daemon by pid would miss its threads."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk not found: the bare and cache-hit rows use it.  Install it with "
            "`apt-get install -y wrk`, or pass --python-client for the old Python client."
        )


def run_wrk(
    url: str, body: dict[str, str], concurrency: int, seconds: int, cap: int, pins: Pins
) -> dict[str, int]:
    """One wrk thread on the client CPU posting ``body`` for ``seconds`` or ``cap`` requests;
    the script's JSON summary (microseconds; ``capped_us`` 0 unless the cap ended it)."""
    text = json.dumps(body, ensure_ascii=False)
    assert "]==]" not in text
    with tempfile.TemporaryDirectory(prefix="sambertd-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_LUA.replace("@BODY@", text), encoding="utf-8")
        cmd = [*pins.taskset(), "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s"]
        cmd += ["--timeout", "10s", "-s", str(script), url, "--", str(cap)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stdout}{done.stderr}")
    result: dict[str, int] = json.loads(line.removeprefix("BENCH "))
    return result
