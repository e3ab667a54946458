"""Booted Debian 12 test hosts: real systemd as PID 1, sshd, one network namespace each.

A host is ``systemd-nspawn --boot`` over an overlay of one shared root filesystem that
debootstrap builds once from the Debian mirror this machine's apt already uses (cached under
``SAMBERTD_TEST_IMAGES``, default /var/cache/sambertd-tests, keyed by what goes into it).  The
image is a plain server base: systemd, sshd and python3 (what Ansible needs on a node), no
more; everything else must come from the release bundle, as on site.

Each host's network namespace is a node of a :class:`tests.netns.Lab`: the hosts see each
other and the lab's controller namespace, and have no route anywhere else.  Ansible and the
test clients run in the controller namespace and reach the hosts over SSH and HTTP.

The container's /tmp, /run and /var/tmp are its own (the overlay's), so its tmpfiles clean
nothing of ours.  Only processes started here are stopped, by pid.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.netns import Lab

SUITE = "bookworm"
# A Debian server's base as an installer leaves it ("SSH server" + "standard" minus the
# extras): Ansible needs sshd and python3 on the node; the rest comes from the bundle.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2", "procps")
# Bump when the customisation below changes: a new key builds a new image.
IMAGE_REVISION = "1"
IMAGES = Path(os.environ.get("SAMBERTD_TEST_IMAGES", "/var/cache/sambertd-tests"))
SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
    "-o", "BatchMode=yes",
)  # fmt: skip


def unavailable() -> str | None:
    """Why booted hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, overlay mounts, network namespaces)"
    for tool in ("debootstrap", "systemd-nspawn", "ssh", "ssh-keygen", "ip"):
        if shutil.which(tool) is None:
            packages = "debootstrap systemd-container openssh-client"
            return f"{tool} is not installed (apt-get install {packages})"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem"
    return None


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    texts = [p.read_text() for p in Path("/etc/apt").glob("sources.list.d/*.sources")]
    for text in texts:
        for stanza in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M) and "security" not in stanza:
                found = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if found:
                    return found.group(1)
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


def image() -> Path:
    """The shared root filesystem, built on first use (about a minute) and then reused."""
    url = mirror()
    key = hashlib.sha256(f"{SUITE} {url} {PACKAGES} {IMAGE_REVISION}".encode()).hexdigest()[:12]
    path = IMAGES / f"{SUITE}-{key}"
    if (path / ".complete").exists():
        return path
    IMAGES.mkdir(parents=True, exist_ok=True)
    with (IMAGES / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building it
        if not (path / ".complete").exists():
            _build(path, url)
    return path


def _build(path: Path, url: str) -> None:
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE]
    proc = subprocess.run([*cmd, str(partial), url], capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"debootstrap failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    etc = partial / "etc"
    # Each host makes its own machine id at first boot.
    (etc / "machine-id").write_text("")
    (etc / "ssh" / "sshd_config.d" / "test-host.conf").write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
    )
    # No serial console to watch; the journal stays in memory.
    for unit in ("console-getty.service", "getty@.service", "systemd-journald-audit.socket"):
        (etc / "systemd" / "system" / unit).unlink(missing_ok=True)
        (etc / "systemd" / "system" / unit).symlink_to("/dev/null")
    (partial / ".complete").write_text(f"{url}\n")
    partial.rename(path)


class Host:
    """One booted container: ``name`` is its host name, inventory name and lab node."""

    def __init__(self, lab: Lab, node: str, name: str, work: Path, key: Path) -> None:
        self.lab, self.node, self.name, self.key = lab, node, name, key
        self.dir = work / name
        self.root = self.dir / "root"
        self.proc: subprocess.Popen[bytes] | None = None
        self.mounted = False

    @property
    def ip(self) -> str:
        return self.lab.ip(self.node)

    def boot(self, lower: Path, timeout: float = 120) -> None:
        for sub in ("upper", "work", "root"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}"
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)], check=True
        )
        self.mounted = True
        self._personalise()
        cmd = [
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
            f"--directory={self.root}", f"--machine={self.lab.ns(self.node)}",
            f"--hostname={self.name}",
            f"--network-namespace-path=/run/netns/{self.lab.ns(self.node)}",
            "--capability=CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_ADMIN",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        ]  # fmt: skip
        with (self.dir / "console.log").open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait(lambda: self.ssh("systemctl is-system-running --wait", check=False).returncode
                  in (0, 1), timeout, f"{self.name} did not boot")  # fmt: skip

    def _personalise(self) -> None:
        ssh = self.root / "root" / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        (self.root / "etc" / "hostname").write_text(f"{self.name}\n")
        hosts = [f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n"]
        (self.root / "etc" / "hosts").write_text("".join(hosts))

    def wait(self, predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: nspawn exited: {self.console()[-2000:]}")
            if predicate():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{what} within {timeout} s: {self.console()[-2000:]}")

    def console(self) -> str:
        path = self.dir / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ssh(
        self, command: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` through the host's shell over SSH from the controller namespace."""
        argv = [*self.lab_exec(), "ssh", *SSH_OPTIONS, "-i", str(self.key), f"root@{self.ip}"]
        proc = subprocess.run([*argv, command], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{self.name}$ {command}: rc={proc.returncode} {proc.stderr}{proc.stdout}"
            )
        return proc

    def lab_exec(self) -> list[str]:
        return ["ip", "netns", "exec", self.lab.ns(CONTROLLER)]

    def unit(self, name: str, prop: str = "ActiveState") -> str:
        return self.ssh(f"systemctl show -P {prop} {name}", check=False).stdout.strip()

    def stop(self) -> None:
        """Power off (SIGTERM makes nspawn ask PID 1 to halt), then kill what remains."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.mounted:
            for _ in range(20):
                if subprocess.run(["umount", str(self.root)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.5)
            else:
                subprocess.run(["umount", "--lazy", str(self.root)], capture_output=True)
            self.mounted = False


CONTROLLER = "ctl"


class Fleet:
    """Booted hosts on one lab bridge plus a controller namespace (Ansible, clients).

    ``hosts`` maps inventory names to (lab node, host number); the controller is node
    ``ctl``.  Hosts boot one after another and are powered off in reverse order.
    """

    def __init__(self, work: Path, hosts: dict[str, tuple[str, int]], controller: int = 200):
        nodes = {node: number for node, number in hosts.values()}
        nodes[CONTROLLER] = controller
        self.lab = Lab(nodes)
        self.work = work
        self.key = work / "id_ed25519"
        self.hosts = {
            name: Host(self.lab, node, name, work, self.key) for name, (node, _) in hosts.items()
        }
        self.image = Path()

    def up(self) -> Fleet:
        self.image = lower = image()
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
        )
        self.lab.up()
        for host in self.hosts.values():
            host.boot(lower)
        return self

    def down(self) -> None:
        for host in reversed(list(self.hosts.values())):
            host.stop()
        self.lab.down()

    def controller(self, cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        """Run ``cmd`` in the controller namespace (where Ansible and clients run)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.lab.ns(CONTROLLER), *cmd],
            capture_output=True, text=True, **kwargs,
        )  # fmt: skip

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]
