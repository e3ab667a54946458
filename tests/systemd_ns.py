"""A real systemd (PID 1 of its own PID + mount + network namespace) for unit-file tests.

systemd as PID 1 runs tmpfiles and friends, so it gets private tmpfs /tmp, /run, /var/tmp and
/var/log (nothing of the host's is wiped), its own network namespace (loopback only), host
units masked at runtime, and a boot target that wants only journald and what a test installs.
Killing our PID 1 by pid ends everything inside the namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
INSIDE = Path("/run/test-work")  # where the test's work directory appears inside
# Early-boot units that would touch host state or are pointless in a test namespace.
MASK = (
    "systemd-sysusers.service",
    "systemd-binfmt.service",
    "systemd-remount-fs.service",
    "systemd-modules-load.service",
    "systemd-sysctl.service",
    "systemd-update-utmp.service",
    "systemd-journal-flush.service",
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-hwdb-update.service",
    "systemd-machine-id-commit.service",
    "systemd-random-seed.service",
    "systemd-firstboot.service",
    "ldconfig.service",
)


def unavailable() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root to create namespaces"
    if not SYSTEMD.exists() or not shutil.which("unshare") or not shutil.which("nsenter"):
        return "systemd, unshare or nsenter not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--net", "true"], capture_output=True
    )
    if probe.returncode != 0:
        return f"the kernel forbids namespaces here: {probe.stderr.decode().strip()}"
    return None


class SystemdNamespace:
    def __init__(
        self, work: Path, units: dict[str, str], users: list[str], keep: tuple[Path, ...] = ()
    ) -> None:
        self.work = work
        # Host paths under the directories we hide (a checkout in /tmp, say) that must stay
        # visible inside: moved back on top of the fresh tmpfs.
        self.keep = [p for p in keep if p.is_relative_to("/tmp") or p.is_relative_to("/var")]
        self.units = units
        self.users = users
        self.pid = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _identity_files(self) -> tuple[Path, Path]:
        """Copies of /etc/passwd and /etc/group with our service users added; bind-mounted
        over the originals inside the namespace only."""
        passwd, group = self.work / "passwd", self.work / "group"
        p_lines = Path("/etc/passwd").read_text().splitlines()
        g_lines = Path("/etc/group").read_text().splitlines()
        for i, user in enumerate(self.users):
            uid = 64000 + i
            p_lines.append(f"{user}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin")
            g_lines.append(f"{user}:x:{uid}:")
        passwd.write_text("\n".join(p_lines) + "\n")
        group.write_text("\n".join(g_lines) + "\n")
        return passwd, group

    def start(self, timeout: float = 30) -> None:
        unit_dir = self.work / "units"
        unit_dir.mkdir()
        target = textwrap.dedent("""\
            [Unit]
            Description=sambertd test boot
            Wants=systemd-journald.service
            """)
        (unit_dir / "test-boot.target").write_text(target)
        for name, text in self.units.items():
            path = unit_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        passwd, group = self._identity_files()
        masks = " ".join(MASK)
        hold = "; ".join(
            f"mkdir -p /run/keep/{i} && mount --bind {p} /run/keep/{i}"
            for i, p in enumerate(self.keep)
        )
        restore = "; ".join(
            f"mkdir -p {p} && mount --move /run/keep/{i} {p}" for i, p in enumerate(self.keep)
        )
        script = self.work / "boot.sh"
        script.write_text(
            textwrap.dedent(f"""\
            set -e
            mount --make-rprivate /
            mount --bind {passwd} /etc/passwd
            mount --bind {group} /etc/group
            mount -t tmpfs -o mode=755 tmpfs /run
            mkdir -p /run/systemd/system {INSIDE}
            cp -r {unit_dir}/. /run/systemd/system/
            for u in {masks}; do ln -sf /dev/null /run/systemd/system/$u; done
            mount --bind {self.work} {INSIDE}
            {hold}
            for d in /tmp /var/tmp /var/log; do mount -t tmpfs -o mode=1777 tmpfs $d; done
            {restore}
            ip link set lo up
            exec {SYSTEMD} --system --unit=test-boot.target --log-level=notice
            """)
        )
        self._log = (self.work / "systemd.log").open("wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "--net",
                "--uts",
                "--ipc",
                "bash",
                str(script),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid = self._find_pid1()
            if self.pid and self.run(
                "systemctl", "is-system-running", check=False
            ).stdout.strip() in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"systemd did not boot: {(self.work / 'systemd.log').read_text()}")

    def _find_pid1(self) -> int:
        """The host pid of our systemd: the child of unshare's forked child."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return 0
        return int(children.split()[0]) if children.split() else 0

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespaces (mount, pid, net) of our systemd."""
        proc = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "-n", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def popen(self, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "-n", *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()

    def host_pid(self, unit: str) -> int:
        """MainPID as seen from the host (systemd reports it in its own PID namespace)."""
        inner = int(self.show(unit, "MainPID"))
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) > 1 and int(ids[-1]) == inner and self._ours(int(entry.name)):
                        return int(entry.name)
        raise LookupError(f"no host pid for {unit} MainPID {inner}")

    def _ours(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{self.pid}/ns/pid")
        except OSError:
            return False

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # PID 1 of the namespace: takes all with it
        if self.proc is not None:
            self.proc.wait(30)
            self._log.close()
