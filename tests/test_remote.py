"""verify, selftest and bench on boxes over SSH (--remote), against real OpenSSH servers on 127.0.0.1 (`sshbox.py`):
boxes named by a Host alias, a fleet of two, and the ways a box fails (no server, a changed host key, killed mid-run).
"""

from __future__ import annotations

import getpass
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, copy_exports, run_cli
from sshbox import SSHD, SshBox, client, keypair, no_server, start_box

from edgecnn.remote.device_install import BoxFacts, box_requirements, fetch_wheels, platform_tags
from edgecnn.remote.ssh import AGENT_SOURCE, RemoteError

pytestmark = pytest.mark.skipif(not SSHD.exists() or shutil.which("ssh") is None,
                                reason="needs Debian's openssh-server and openssh-client (.ci/run installs them)")


class Fleet:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.user_key, self.config = client(folder / "client")
        self.boxes: dict[str, SshBox] = {}

    def start(self, alias: str, **options) -> SshBox:
        self.boxes[alias] = start_box(alias, self.folder / alias, self.user_key, self.config, **options)
        return self.boxes[alias]

    def cli(self, *args: str, timeout: float = 900):
        return run_cli(*args, "--ssh-config", str(self.config), timeout=timeout)

    def ssh(self, alias: str, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.config), "-o", "BatchMode=yes", alias, command], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two boxes, pi4 and jetson, each with its own cache root: the first run prepares each (wheels, venv, code)."""
    made = Fleet(tmp_path_factory.mktemp("fleet"))
    made.start("pi4")
    made.start("jetson")
    yield made
    for box in made.boxes.values():
        box.stop()


def report(path: Path) -> dict:
    return json.loads(path.read_text())


def probe_facts(**changes) -> BoxFacts:
    raw = {"python": [3, 11, 2], "implementation": "cpython", "system": "Linux", "machine": "x86_64", "libc": "glibc", "libc_version": "2.36",
           "cpu": "Cortex-A72", "cores": 4, "memory_mib": 3794, "os": "Debian GNU/Linux 12 (bookworm)", "hostname": "pi4", "nvidia": False}
    return BoxFacts.from_probe(raw | changes)


def test_verify_selftest_and_bench_run_on_the_box_named_by_its_alias(exported, fleet, small_npz, tmp_path):
    manifest = copy_exports(exported, tmp_path / "exports")
    here = run_cli("verify", "--manifest", str(manifest), "--json")
    assert here.returncode == 0, here.stderr
    first = fleet.cli("verify", "--manifest", str(manifest), "--remote", "pi4", "--data", str(small_npz), "--json")
    assert first.returncode == 0, first.stderr
    verified = json.loads(first.stdout)
    assert {row["host"] for row in verified["artifacts"]} == {"pi4"} and len(verified["artifacts"]) == 8
    # the box's verdicts are the workstation's: the same files, the same stored reference
    assert {(row["name"], row["status"], row["accuracy"]) for row in verified["artifacts"]} == \
        {(row["name"], row["status"], row["accuracy"]) for row in json.loads(here.stdout)["artifacts"]}
    device = verified["artifacts"][0]["device"]
    assert device["cpu"] and device["cpu_count"] >= 1 and device["memory_mib"] > 0 and device["os"] and device["python"]
    assert device["versions"]["onnxruntime"] and device["versions"]["ai-edge-litert"]
    preparation = verified["hosts"][0]["preparation"]
    assert preparation["installed"] and preparation["bytes_sent"] > 20e6, preparation  # the wheels, once
    assert "--data stays on this machine" in first.stderr
    pi4 = fleet.boxes["pi4"]
    sent = {path.name for path in (pi4.cache / "exports").rglob("*") if path.is_file()}
    assert small_npz.name not in sent and "verify_reference.npz" in sent and not any(name.endswith(".keras") for name in sent)
    assert not (pi4.cache / "wheels").exists() or not any((pi4.cache / "wheels").rglob("*.whl"))  # installed, then removed

    venv_python = next((pi4.cache / "venvs").glob("*/bin/python"))
    no_tensorflow = fleet.ssh("pi4", f"{venv_python} -c 'import tensorflow'")
    assert no_tensorflow.returncode != 0 and "No module named 'tensorflow'" in no_tensorflow.stderr
    assert fleet.ssh("pi4", f"{venv_python} -c 'import onnxruntime, ai_edge_litert'").returncode == 0

    again = fleet.cli("verify", "--manifest", str(manifest), "--remote", "pi4")
    assert again.returncode == 0, again.stderr
    reused = report(manifest.parent / "verify.json")["hosts"][0]["preparation"]
    assert not reused["installed"] and reused["files_sent"] == 0 and reused["bytes_sent"] < 200_000, reused
    assert "pi4: ready in" in again.stderr and "reused its venv; sent 0 files" in again.stderr
    assert "│ pi4 " in again.stdout and "PASS" in again.stdout

    for artifact in ("mnist_cnn.onnx", "mnist_cnn_int8.tflite"):
        selftested = fleet.cli("selftest", str(manifest.parent / artifact), "--remote", "pi4", "--json")
        assert selftested.returncode == 0, selftested.stderr
        result = json.loads(selftested.stdout)["results"][0]
        assert result["host"] == "pi4" and result["passed"] and result["top1_agreeing"] == result["goldens"] > 0

    benched = fleet.cli("bench", "--manifest", str(manifest), "--remote", "pi4", "--artifact", "onnx-fp32", "--artifact", "tflite-int8",
                        "--batch-sizes", "1,8", "--seconds", "0.1", "--rounds", "2", "--no-memory")
    assert benched.returncode == 0, benched.stderr
    rows = report(manifest.parent / "bench.json")["results"]
    assert len(rows) == 4 and all(row["host"] == "pi4" and row["status"] == "measured" and row["p50_us"] > 0 for row in rows)
    assert all(row["device"]["versions"]["onnxruntime"] for row in rows)
    assert "pi4, CPU, batch 1 →" in benched.stdout


def test_a_fleet_of_two_boxes_and_this_machine_share_one_report(exported, fleet, tmp_path):
    manifest = copy_exports(exported, tmp_path / "exports")
    run = fleet.cli("bench", "--manifest", str(manifest), "--remote", "pi4", "--remote", "jetson", "--remote", "local", "--artifact", "onnx-fp32",
                    "--artifact", "onnx-int8", "--batch-sizes", "1,8", "--seconds", "0.1", "--rounds", "2", "--no-memory")
    assert run.returncode == 0, run.stderr
    bench = report(manifest.parent / "bench.json")
    assert [host["host"] for host in bench["hosts"]] == ["pi4", "jetson", "local"]
    assert all(host["status"] == "ran" for host in bench["hosts"])
    measured = {(row["host"], row["artifact"], row["batch_size"]) for row in bench["results"] if row["status"] == "measured"}
    assert measured == {(host, artifact, size) for host in ("pi4", "jetson", "local") for artifact in ("onnx-fp32", "onnx-int8") for size in (1, 8)}
    ship = {(item["host"], item["target"]) for item in bench["what_to_ship"]}
    assert ship == {(host, target) for host in ("pi4", "jetson", "local") for target in ("CPU, batch 1", "CPU, throughput")}
    assert {row["host"] for row in bench["verdicts"]} == {"pi4", "jetson", "local"}
    document = (manifest.parent / "fleet.md").read_text()
    for host in ("pi4", "jetson", "local"):
        assert f"  {host}, CPU, batch 1 → " in run.stdout
        assert f"| {host} | CPU, batch 1 | " in document and f"| {host} | onnx-int8 | int8 | ORT CPU | 8 |" in document
    assert "(reused)" in document or "MB sent" in document


def test_a_box_with_no_server_is_one_line_and_the_others_rows_are_kept(exported, fleet, tmp_path):
    manifest = copy_exports(exported, tmp_path / "exports")
    port = no_server("off", fleet.user_key, fleet.config)
    run = fleet.cli("bench", "--manifest", str(manifest), "--remote", "pi4", "--remote", "off", "--artifact", "onnx-fp32", "--batch-sizes", "1",
                    "--seconds", "0.1", "--rounds", "2", "--no-memory")
    assert run.returncode == 1, run.stderr
    line = f"off: FAILED: ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    assert (run.stdout + run.stderr).count(line) == 1 and line in run.stderr.splitlines() and "Traceback" not in run.stderr
    bench = report(manifest.parent / "bench.json")
    assert not bench["passed"]
    assert [row for row in bench["results"] if row["host"] == "off"] == [
        {"host": "off", "status": "failed", "host_error": f"ssh: connect to host 127.0.0.1 port {port}: Connection refused", "device": None}]
    assert [row["host"] for row in bench["results"] if row["status"] == "measured"] == ["pi4"]

    alone = fleet.cli("verify", "--manifest", str(manifest), "--remote", "off", "--json")
    assert alone.returncode == 1
    assert json.loads(alone.stdout)["artifacts"] == [{"host": "off", "status": "failed", "host_error": f"ssh: connect to host 127.0.0.1 port {port}: "
                                                      "Connection refused", "device": None}]


def test_a_refused_key_and_a_slow_box_are_one_line_each(exported, fleet, tmp_path):
    manifest = copy_exports(exported, tmp_path / "exports")
    stranger_key = tmp_path / "stranger_key"
    keypair(stranger_key)
    with fleet.config.open("a") as handle:  # pi4's server, with a key it does not know
        handle.write(f"Host stranger\n  HostName 127.0.0.1\n  Port {fleet.boxes['pi4'].port}\n  IdentityFile {stranger_key}\n  IdentitiesOnly yes\n"
                     f"  UserKnownHostsFile {fleet.config.parent / 'known_hosts'}\n")
    refused = fleet.cli("verify", "--manifest", str(manifest), "--remote", "stranger")
    assert refused.returncode == 1
    assert "stranger: FAILED: ssh: " in refused.stderr and "Permission denied (publickey)" in refused.stderr, refused.stderr
    with fleet.config.open("a") as handle:  # the user's defaults for a box named by address rather than by alias
        handle.write(f"Host 127.0.0.1\n  IdentityFile {fleet.user_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {fleet.config.parent / 'known_hosts'}\n")
    address = f"{getpass.getuser()}@127.0.0.1:{fleet.boxes['pi4'].port}"
    by_address = fleet.cli("selftest", str(manifest.parent / "mnist_cnn_fp16.onnx"), "--remote", address, "--json")
    assert by_address.returncode == 0, by_address.stderr
    assert json.loads(by_address.stdout)["results"][0]["host"] == address
    slow = fleet.cli("verify", "--manifest", str(manifest), "--remote", "pi4", "--remote-timeout", "0.5")
    assert slow.returncode == 1
    assert "pi4: FAILED: no answer within 0.5 s (--remote-timeout)" in slow.stderr, slow.stderr
    assert report(manifest.parent / "verify.json")["artifacts"][0]["host_error"] == "no answer within 0.5 s (--remote-timeout)"


def test_a_box_behind_a_jump_host_is_reached_through_it(exported, fleet, tmp_path):
    """The user's ProxyJump works as ssh itself reads it: through pi4 to jetson's server; with the jump host off, the
    jump is what fails."""
    manifest = copy_exports(exported, tmp_path / "exports")
    known_hosts = fleet.config.parent / "known_hosts"
    off_port = no_server("bastion-off", fleet.user_key, fleet.config)
    with fleet.config.open("a") as handle:
        for alias, jump in (("behind", "pi4"), ("behind-off", "bastion-off")):
            handle.write(f"Host {alias}\n  HostName 127.0.0.1\n  Port {fleet.boxes['jetson'].port}\n  ProxyJump {jump}\n  User {getpass.getuser()}\n"
                         f"  IdentityFile {fleet.user_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking yes\n")
    through = fleet.cli("selftest", str(manifest.parent / "mnist_cnn.onnx"), "--remote", "behind", "--json")
    assert through.returncode == 0, through.stderr
    assert json.loads(through.stdout)["results"][0]["host"] == "behind"
    assert any((fleet.boxes["jetson"].cache / "models").rglob("mnist_cnn.onnx"))
    blocked = fleet.cli("selftest", str(manifest.parent / "mnist_cnn.onnx"), "--remote", "behind-off")
    assert blocked.returncode == 1
    assert f"port {off_port}: Connection refused" in blocked.stderr, blocked.stderr


@pytest.mark.parametrize("checking", ["yes", "no"])
def test_a_changed_host_key_is_refused_and_never_accepted(exported, fleet, tmp_path, checking):
    """Even where the user's config says StrictHostKeyChecking no, under which ssh itself would carry on."""
    manifest = copy_exports(exported, tmp_path / "exports")
    alias = f"changed-{checking}"
    other_key = keypair(tmp_path / "other_host_key")
    fleet.start(alias, known_key=other_key, checking=checking, cache=fleet.boxes["pi4"].cache.parent)
    known_hosts = (fleet.config.parent / "known_hosts").read_bytes()
    run = fleet.cli("verify", "--manifest", str(manifest), "--remote", alias)
    assert run.returncode == 1
    assert f"{alias}: FAILED: its host key is not the one in known_hosts (REMOTE HOST IDENTIFICATION HAS CHANGED): refused" in run.stderr
    assert (fleet.config.parent / "known_hosts").read_bytes() == known_hosts
    fleet.boxes.pop(alias).stop()


def edgecnn_bench_under(root: Path) -> int | None:
    """The pid of an `edgecnn bench` running in a folder under `root` (a box's cache), if any."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"edgecnn\x00bench" in (entry / "cmdline").read_bytes() and str(root) in os.readlink(entry / "cwd"):
                return int(entry.name)
        except OSError:
            continue
    return None


def test_a_box_that_goes_away_mid_bench_is_one_line_and_the_other_boxes_rows_are_kept(exported, fleet, tmp_path):
    manifest = copy_exports(exported, tmp_path / "exports")
    doomed = fleet.start("doomed", cache=fleet.boxes["jetson"].cache.parent)  # jetson's device, behind a server we will kill

    def kill_when_benching() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and edgecnn_bench_under(doomed.cache) is None:
            time.sleep(0.1)
        doomed.kill()

    killer = threading.Thread(target=kill_when_benching)
    killer.start()
    run = fleet.cli("bench", "--manifest", str(manifest), "--remote", "pi4", "--remote", "doomed", "--artifact", "onnx-fp32",
                    "--batch-sizes", "1,8,64", "--seconds", "1", "--rounds", "3", "--no-memory")
    killer.join()
    fleet.boxes.pop("doomed")
    assert run.returncode == 1, run.stderr
    failed = [line for line in run.stderr.splitlines() if line.startswith("doomed: FAILED: ssh:")]
    assert len(failed) == 1, run.stdout + run.stderr
    bench = report(manifest.parent / "bench.json")
    assert {(row["host"], row["status"]) for row in bench["results"]} == {("pi4", "measured"), ("doomed", "failed")}
    assert len([row for row in bench["results"] if row["host"] == "pi4"]) == 3


def test_every_argument_reaches_the_box_quoted(exported, fleet, tmp_path):
    manifest = copy_exports(exported, tmp_path / "exports")
    marker = tmp_path / "injected"
    run = fleet.cli("verify", "--manifest", str(manifest), "--remote", "pi4", "--artifact", f"x'; touch {marker}; echo '")
    assert run.returncode == 1
    assert "pi4: FAILED: edgecnn verify exited 2: error: no artifact" in run.stderr, run.stderr
    assert not marker.exists()


def test_options_a_box_cannot_honour_are_one_line(tmp_path):
    manifest = str(tmp_path / "manifest.json")
    assert_one_line_error(run_cli("verify", "--manifest", manifest, "--remote", "pi4", "--explain", "onnx-int8"), "--explain", "a box does not run")
    assert_one_line_error(run_cli("verify", "--manifest", manifest, "--remote", "pi4", "--corruptions"), "--corruptions")
    assert_one_line_error(run_cli("bench", "--manifest", manifest, "--remote", "pi4", "--baseline", "keras"), "--baseline")
    assert_one_line_error(run_cli("bench", "--model", manifest, "--remote", "pi4"), "selftest FILE --remote HOST")
    assert_one_line_error(run_cli("bench", "--manifest", manifest, "--remote", "a b"), "is not [user@]host[:port]", "--remote")
    assert_one_line_error(run_cli("bench", "--manifest", manifest, "--remote", "pi4", "--remote", "pi4"), "pi4 is named twice")
    assert_one_line_error(run_cli("verify", "--manifest", manifest, "--remote", "pi4", "--ssh-config", str(tmp_path / "none")), "--ssh-config")


def test_a_box_edgecnn_cannot_run_on_says_what_it_needs():
    with pytest.raises(RemoteError, match=r"python3 is cpython 3\.8\.10; edgecnn's device side needs CPython 3\.11 or newer"):
        probe_facts(python=[3, 8, 10]).check("oldpi")
    with pytest.raises(RemoteError, match="runs Linux with musl.*glibc"):
        probe_facts(libc="musl", libc_version="1.2").check("alpine")
    probe_facts().check("pi4")


def test_the_boxes_packages_follow_the_box_not_this_machine():
    arm = box_requirements(probe_facts(machine="aarch64"))
    assert any(name.startswith("onnxruntime>=") for name in arm) and not any("gpu" in name for name in arm)
    assert not any(name.split(">")[0].split("<")[0] in ("tensorflow", "keras", "tf2onnx") for name in arm)
    assert any(name.startswith("onnxruntime>=") for name in box_requirements(probe_facts()))  # x86-64 without an NVIDIA driver: CPU wheel
    assert any(name.startswith("onnxruntime-gpu") for name in box_requirements(probe_facts(nvidia=True)))
    tags = platform_tags(probe_facts(machine="aarch64", libc_version="2.31"))
    assert tags[0] == "manylinux_2_31_aarch64" and "manylinux2014_aarch64" in tags and "manylinux_2_17_aarch64" in tags
    assert not any("x86_64" in tag or "manylinux_2_32" in tag for tag in tags)


def agent(root: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", AGENT_SOURCE, *args], input=stdin, capture_output=True, env=os.environ | {"XDG_CACHE_HOME": str(root)},
                          timeout=60)


def tar_of(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name.replace("__", "/"))
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_agent_keeps_to_its_cache_root(tmp_path):
    import hashlib

    for bad in ("../outside", "/etc", "exports/../../x", ""):
        refused = agent(tmp_path, "listing", bad)
        assert refused.returncode == 2 and b"refused path" in refused.stderr, refused.stderr
    expected = json.dumps({"a.txt": hashlib.sha256(b"a").hexdigest()})
    climbing = tar_of(**{"..__evil": b"x"})
    assert b"refused" in agent(tmp_path, "receive", "exports/m", json.dumps({"../evil": "0"}), stdin=climbing).stderr
    assert not (tmp_path / "edgecnn" / "exports" / "evil").exists() and not (tmp_path / "edgecnn" / "evil").exists()
    assert b"only the regular files that were listed" in agent(tmp_path, "receive", "exports/m", expected, stdin=tar_of(other=b"x")).stderr
    received = agent(tmp_path, "receive", "exports/m", expected, stdin=tar_of(**{"a.txt": b"a"}))
    assert received.returncode == 0 and json.loads(received.stdout) == {"received": 1, "removed": 0}
    damaged = agent(tmp_path, "receive", "exports/m", expected, stdin=tar_of(**{"a.txt": b"b"}))
    assert damaged.returncode == 2 and b"differ from their sha256" in damaged.stderr


@pytest.mark.slow
def test_an_aarch64_box_gets_aarch64_wheels_fetched_here():
    """A Raspberry Pi or a Jetson: every compiled wheel for aarch64 and the box's Python, the runtimes among them (from
    PyPI, once per box kind: this machine's cache keeps them)."""
    facts = probe_facts(machine="aarch64", python=[3, 11, 2], libc_version="2.36")
    wheels = fetch_wheels(facts, box_requirements(facts), "pi4")
    names = [path.name for path in wheels.files]
    for package in ("onnxruntime-", "ai_edge_litert-", "numpy-", "pillow-", "pip-"):
        assert any(name.startswith(package) for name in names), names
    compiled = [name for name in names if not name.endswith("-none-any.whl")]
    assert compiled and all("aarch64" in name and ("cp311" in name or "abi3" in name) for name in compiled), compiled
    assert not any(name.startswith(("tensorflow", "onnxruntime_gpu")) for name in names)
