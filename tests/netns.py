"""Test hosts in network namespaces: node A, node B and a client joined by a bridge that
lives in its own namespace.  Everything is created here, addressed only inside these
namespaces, and deleted on exit (deleting a namespace removes its veth ends)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

SUBNET = "10.77.{n}.0/24"


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "keepalived", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"sbdprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return f"the kernel forbids network namespaces here: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


class Lab:
    """``nodes`` maps a short name to its host number in 10.77.<net>.0/24."""

    def __init__(self, nodes: dict[str, int]) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.net = 10 + int(self.tag[:2], 16) % 200  # a /24 of our own per lab
        self.nodes = nodes
        self.bridge_ns = f"sbd{self.tag}br"
        self.created: list[str] = []

    def ns(self, node: str) -> str:
        return f"sbd{self.tag}{node}"

    def ip(self, node: str) -> str:
        return f"10.77.{self.net}.{self.nodes[node]}"

    def address(self, host: int) -> str:
        return f"10.77.{self.net}.{host}"

    def up(self) -> Lab:
        run("ip", "netns", "add", self.bridge_ns)
        self.created.append(self.bridge_ns)
        run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for node in self.nodes:
            ns = self.ns(node)
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            port = f"p{node}"
            # Both veth ends are born inside our namespaces; the host's stack is never used.
            run(
                "ip",
                "-n",
                self.bridge_ns,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            run("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0")
            run("ip", "-n", self.bridge_ns, "link", "set", port, "up")
            run("ip", "-n", ns, "addr", "add", f"{self.ip(node)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        return self

    def down(self) -> None:
        for ns in reversed(self.created):
            run("ip", "netns", "del", ns, check=False)
        self.created.clear()

    def __enter__(self) -> Lab:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: object) -> None:
        self.down()

    def popen(
        self,
        node: str,
        cmd: Sequence[str],
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        cmd = ["ip", "netns", "exec", self.ns(node), *cmd]
        if log is None:
            return subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def exec(self, node: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns(node), *cmd, check=check)

    def has_address(self, node: str, address: str) -> bool:
        out = run("ip", "-n", self.ns(node), "-o", "addr", "show", "dev", "eth0").stdout
        return f" {address}/" in out

    def link(self, node: str, up: bool) -> None:
        run("ip", "-n", self.ns(node), "link", "set", "eth0", "up" if up else "down")

    def wait(self, predicate, timeout: float, step: float = 0.05) -> float:  # type: ignore[no-untyped-def]
        """Seconds until ``predicate()`` held; raises TimeoutError."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            time.sleep(step)
        raise TimeoutError(f"condition not met within {timeout} s")
