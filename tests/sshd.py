"""Real OpenSSH test hosts: one ``sshd`` per host on its own loopback address.

Each host has its own host key and root directory; every host accepts one throw-away
client key. Stopping a host (or ``SIGSTOP``-ing it) is how tests make a host fail or hang.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/bin/sshd")


def find_sshd() -> str | None:
    for path in SSHD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("sshd")


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    """Make an ed25519 key pair at ``path`` and return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return Path(f"{path}.pub").read_text().strip()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd forks one child per connection)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class SshHost:
    name: str
    address: str
    port: int
    workdir: Path
    sshd: str
    host_pubkey: str
    root: Path = field(init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.root = self.workdir / "root"

    @property
    def config(self) -> Path:
        return self.workdir / "sshd_config"

    def write_config(self, authorized_keys: Path) -> None:
        self.config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}",
                    f"Port {self.port}",
                    f"HostKey {self.workdir / 'host_key'}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    # Also each user's own file, as on a real host (the rotterdam
                    # test's deploy user: sshd reads keys as the user, who cannot read
                    # the shared file).
                    f"AuthorizedKeysFile {authorized_keys} .ssh/authorized_keys",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )

    def start(self) -> None:
        if self.running:
            return
        self.process = subprocess.Popen(
            [self.sshd, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "sshd.log", "ab"),  # noqa: SIM115 - owned by the child
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "sshd.log").read_text(errors="replace")
                raise RuntimeError(f"sshd for {self.name} exited: {log[-500:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd for {self.name} did not listen on {self.address}:{self.port}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the listener and every session it spawned, as a crashed host would."""
        if self.process is None:
            return
        self.resume()
        for child in descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        """Freeze the host: the listener and its sessions stop answering, as a hung box."""
        if self.process is not None:
            for pid in [self.process.pid, *descendants(self.process.pid)]:
                _signal(pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for pid in [self.process.pid, *descendants(self.process.pid)]:
                _signal(pid, signal.SIGCONT)

    def pose_as_impostor(self) -> None:
        """Restart this host with a second host key that known_hosts does not hold, as a
        machine posing as this host would present; ``restore_host_key`` undoes it."""
        other = self.workdir / "impostor_key"
        if not other.exists():
            keygen(other)
        self._swap_host_key(self.workdir / "host_key", other)

    def restore_host_key(self) -> None:
        self._swap_host_key(self.workdir / "impostor_key", self.workdir / "host_key")

    def _swap_host_key(self, old: Path, new: Path) -> None:
        text = self.config.read_text()
        if f"HostKey {old}\n" not in text:
            return
        self.stop()
        self.config.write_text(text.replace(f"HostKey {old}\n", f"HostKey {new}\n"))
        self.start()


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@dataclass
class SshLab:
    """A set of sshd hosts sharing one client key and one known_hosts file."""

    workdir: Path
    hosts: list[SshHost]
    client_key: Path
    known_hosts: Path

    def fresh_roots(self, base: Path) -> None:
        """Give every host a new, empty root directory under ``base``."""
        for host in self.hosts:
            host.root = base / host.name
            host.root.mkdir(parents=True, exist_ok=True)

    def ensure_running(self) -> None:
        for host in self.hosts:
            host.resume()
            host.start()

    def stop_all(self) -> None:
        for host in self.hosts:
            host.stop()


def start_lab(workdir: Path, count: int, first_octet: int = 2) -> SshLab:
    sshd = find_sshd()
    if sshd is None:
        raise FileNotFoundError("sshd is not installed (Debian package openssh-server)")
    # sshd insists on its privilege-separation directory even when run by hand.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    client_key = workdir / "client_key"
    keygen(client_key)
    authorized = workdir / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    hosts: list[SshHost] = []
    known: list[str] = []
    for i in range(count):
        name = f"host{i + 1}"
        address = f"127.0.0.{first_octet + i}"
        hostdir = workdir / name
        hostdir.mkdir()
        keygen(hostdir / "host_key")
        pub = Path(f"{hostdir / 'host_key'}.pub").read_text().strip()
        host = SshHost(name, address, free_port(address), hostdir, sshd, pub)
        host.write_config(authorized)
        host.root.mkdir()
        hosts.append(host)
        key_type, key_data = pub.split()[:2]
        known.append(f"[{address}]:{host.port} {key_type} {key_data}")
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    lab = SshLab(workdir, hosts, client_key, known_hosts)
    try:
        for host in hosts:
            host.start()
    except Exception:
        lab.stop_all()
        raise
    return lab
