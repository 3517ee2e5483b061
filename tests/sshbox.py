"""Real boxes for the --remote tests: Debian's OpenSSH server on 127.0.0.1, on a free port, with a throwaway host key and
user key, and a client configuration naming it by a `Host` alias (the way users name their Pi or Jetson).

Each box has its own cache root (sshd's `SetEnv XDG_CACHE_HOME`), so two boxes on one machine are two devices to
edgecnn: their own venv, their own copy of the export folder.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def keypair(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecnn-test", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class SshBox:
    alias: str
    port: int
    folder: Path
    process: subprocess.Popen
    cache: Path  # the box's edgecnn cache root, where everything edgecnn puts on it lives

    def kill(self) -> None:
        """The server and every session it serves, at once: a box that goes away mid-run."""
        for pid in descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def start_box(alias: str, folder: Path, user_key: Path, client_config: Path, cache: Path | None = None, known_key: str | None = None,
              checking: str = "yes") -> SshBox:
    """An sshd for one box, and its alias appended to the client configuration. known_hosts holds its real host key, or
    `known_key` (a box whose key changed); `cache`: share another box's cache root (the same device behind a new server)."""
    folder.mkdir(parents=True, exist_ok=True)
    host_key = folder / "host_key"
    host_public = keypair(host_key)
    authorized = folder / "authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "PermitRootLogin prohibit-password", f"SetEnv XDG_CACHE_HOME={cache or folder / 'cache'}", "LogLevel ERROR", "",
    ]))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    known_hosts = client_config.parent / "known_hosts"
    with known_hosts.open("a") as handle:
        handle.write(f"[127.0.0.1]:{port} {' '.join((known_key or host_public).split()[:2])}\n")
    with client_config.open("a") as handle:
        handle.write("\n".join([
            f"Host {alias}", "  HostName 127.0.0.1", f"  Port {port}", f"  User {getpass.getuser()}", f"  IdentityFile {user_key}",
            "  IdentitiesOnly yes", f"  UserKnownHostsFile {known_hosts}", "  GlobalKnownHostsFile /dev/null", f"  StrictHostKeyChecking {checking}", "",
        ]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return SshBox(alias, port, folder, process, (cache or folder / "cache") / "edgecnn")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"sshd for {alias} did not listen on port {port}")


def no_server(alias: str, user_key: Path, client_config: Path) -> int:
    """An alias whose port has no server behind it (a box that is off)."""
    port = free_port()
    with client_config.open("a") as handle:
        handle.write(f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {user_key}\n  BatchMode yes\n")
    return port


def client(folder: Path) -> tuple[Path, Path]:
    """A user key and an empty client configuration (ssh's -F), as a user's ~/.ssh holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    user_key = folder / "id_ed25519"
    keypair(user_key)
    config = folder / "config"
    config.write_text("")
    return user_key, config
