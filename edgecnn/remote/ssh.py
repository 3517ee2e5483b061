"""Talking to a box through the system's OpenSSH client, so the user's own configuration keeps working: keys, agent,
jump hosts (ProxyJump), `Host` aliases and `known_hosts`.

What edgecnn adds to every call: BatchMode (never a password or host-key prompt: a run that would prompt fails with
ssh's own line), keep-alives (a box that goes away mid-run is noticed within seconds) and a connect timeout. Host keys
are checked as the user's configuration says; a changed host key is refused even where that configuration would let
ssh carry on (StrictHostKeyChecking=no), and edgecnn never edits `known_hosts`.

The only command a box is asked to run is `python3 -c <the agent> OP ARGS` (`agent.py`), every word quoted.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.errors import EdgecnnError

AGENT_SOURCE = (Path(__file__).parent / "agent.py").read_text(encoding="utf-8")
CHANGED_HOST_KEY = "REMOTE HOST IDENTIFICATION HAS CHANGED"
HOST_PATTERN = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?$")
OPTIONS = ("BatchMode=yes", "ConnectTimeout=15", "ServerAliveInterval=5", "ServerAliveCountMax=3")


class RemoteError(EdgecnnError):
    """One box could not do what was asked: the fleet turns it into that box's failed row and carries on."""


@dataclass(frozen=True)
class Box:
    """A box named as the user wrote it: `[user@]host[:port]`, or a `Host` alias of their ssh configuration."""

    name: str
    ssh_config: Path | None = None  # ssh's -F: another configuration file instead of ~/.ssh/config

    @classmethod
    def parse(cls, text: str, ssh_config: Path | None = None) -> Box:
        if not HOST_PATTERN.match(text):
            raise EdgecnnError(f"{text!r} is not [user@]host[:port] or an ssh Host alias", "--remote")
        return cls(text, ssh_config)

    def destination(self) -> list[str]:
        """ssh's words for this box: a port given as host:port becomes -p (an alias keeps its configured port)."""
        match = HOST_PATTERN.match(self.name)
        assert match is not None
        user, host, port = match.group("user"), match.group("host").strip("[]"), match.group("port")
        return (["-p", port] if port else []) + [f"{user}@{host}" if user else host]

    def command(self, operation: str, *arguments: str) -> list[str]:
        """The ssh command line that runs the agent's `operation` on the box."""
        config = ["-F", str(self.ssh_config)] if self.ssh_config is not None else []
        options = [word for option in OPTIONS for word in ("-o", option)]
        remote = " ".join(shlex.quote(word) for word in ("python3", "-c", AGENT_SOURCE, operation, *arguments))
        return ["ssh", *config, *options, *self.destination(), "--", remote]


@dataclass(frozen=True)
class Answer:
    """What one agent call printed, and how many bytes it sent to the box (command line and stdin)."""

    stdout: bytes
    stderr: str
    returncode: int
    bytes_sent: int


def call(box: Box, operation: str, *arguments: str, stdin: bytes = b"", timeout: float | None = None) -> Answer:
    """Run one agent operation on the box; a connection, host-key or agent failure raises RemoteError with one line."""
    command = box.command(operation, *arguments)
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise RemoteError("no ssh client on this machine (install OpenSSH's client: apt-get install openssh-client)", box.name) from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"no answer within {timeout:g} s (--remote-timeout)", box.name) from None
    stderr = done.stderr.decode(errors="replace")
    answer = Answer(done.stdout, stderr, done.returncode, len(command[-1]) + len(stdin))
    if CHANGED_HOST_KEY in stderr:
        raise RemoteError("its host key is not the one in known_hosts (REMOTE HOST IDENTIFICATION HAS CHANGED): refused; check the box, "
                          "then update known_hosts yourself", box.name)
    if done.returncode == 255:
        raise RemoteError(connection_failure(stderr), box.name)
    if done.returncode == 127 and "python3" in stderr:
        raise RemoteError("the box has no python3 on its PATH; edgecnn's device side needs Python 3.11 or newer "
                          "(Debian, Raspberry Pi OS: apt-get install python3)", box.name)
    return answer


def connection_failure(stderr: str) -> str:
    """ssh's own reason: its first `ssh:` line where it wrote one (a jump host that failed writes its reason first, then
    that the connection closed), else its last line."""
    own = [line.strip() for line in stderr.splitlines() if line.startswith("ssh: ")]
    return own[0] if own else f"ssh: {last_line(stderr) or 'the connection failed'}"


def last_line(text: str) -> str:
    """ssh's reason: its last line that is not a notice about known_hosts."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Warning: Permanently added")]
    return lines[-1] if lines else ""


def agent_json(box: Box, operation: str, *arguments: str, stdin: bytes = b"", timeout: float | None = None) -> tuple[dict, int]:
    """An agent operation's JSON answer and the bytes sent; its failure is one RemoteError line."""
    answer = call(box, operation, *arguments, stdin=stdin, timeout=timeout)
    if answer.returncode != 0:
        raise RemoteError(last_line(answer.stderr) or f"the agent's {operation} exited {answer.returncode}", box.name)
    try:
        return json.loads(answer.stdout), answer.bytes_sent
    except ValueError:
        raise RemoteError(f"the agent's {operation} answered no JSON: {answer.stdout[:80]!r}", box.name) from None
