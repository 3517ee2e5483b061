"""verify, selftest and bench on the boxes the model ships to, over SSH: one box or a fleet, in parallel, each box one
command at a time.

Per box: ask it what it is (`probe`), give it the device install once (wheels fetched here for its Python and
platform, installed into a venv under its cache root), send edgecnn's code and the files the command needs (only
those whose sha256 differs), run the same edgecnn command there with `--json`, and bring its JSON back. A box that
fails at any step is a failed row with one line; the other boxes' rows are kept. `local` in the fleet is this machine,
run in this process, so the workstation's rows can sit beside the boxes' in one file.

The box verifies against the export folder's stored reference (`verify_reference.npz`): it runs no TensorFlow, and the
user's dataset never leaves this machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.files import ensure_output_dir, read_json, sha256_file, write_json_atomic
from edgecnn.core.manifest import load_manifest
from edgecnn.core.provenance import THIS_MACHINE, library_versions, this_machine, utc_now
from edgecnn.remote.device_install import BoxFacts, box_requirements, fetch_wheels, venv_name
from edgecnn.remote.ssh import Box, RemoteError, agent_json, call, last_line
from edgecnn.remote.sync import edgecnn_code, export_files, sync
from edgecnn.report.document import write_report
from edgecnn.report.fleet import fleet_sections
from edgecnn.report.ship import Recommendation, recommend
from edgecnn.report.tables import HOST_ERROR
from edgecnn.runners import RunOptions, RuntimeName
from edgecnn.stages.bench import REPORT_FILENAME as BENCH_FILENAME
from edgecnn.stages.bench import BenchOptions, BenchResult, bench
from edgecnn.stages.selftest import SelftestOptions, selftest
from edgecnn.stages.verify import REPORT_FILENAME as VERIFY_FILENAME
from edgecnn.stages.verify import VerifyOptions, verify

DEFAULT_TIMEOUT_S = 1800.0
FLEET_REPORT = "fleet"  # fleet.md and fleet.html beside bench.json
VERDICT_EXIT_CODES = (0, 1, 3)  # edgecnn's own answers: all passed, something failed, too few images to decide


@dataclass(frozen=True)
class RemoteOptions:
    hosts: tuple[str, ...]  # as the user wrote them: [user@]host[:port], an ssh Host alias, or `local` for this machine
    ssh_config: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S  # for each step on a box

    def check(self) -> None:
        if self.ssh_config is not None and not Path(self.ssh_config).is_file():
            raise EdgecnnError(f"{self.ssh_config} does not exist", "--ssh-config")
        if not self.timeout_s > 0:
            raise EdgecnnError(f"the timeout must be positive, got {self.timeout_s:g}", "--remote-timeout")
        repeated = sorted({host for host in self.hosts if self.hosts.count(host) > 1})
        if repeated:
            raise EdgecnnError(f"{repeated[0]} is named twice", "--remote")
        for host in self.hosts:
            if host != THIS_MACHINE:
                Box.parse(host, self.ssh_config)


@dataclass(frozen=True)
class Preparation:
    """How a box was made ready, for the note the user reads and for bench/RESULTS.md."""

    venv: str
    installed: bool  # False: the venv from an earlier run was reused
    seconds: float
    wheels_fetched_s: float
    install_s: float
    files_sent: int
    bytes_sent: int

    def describe(self) -> str:
        fetched = f", wheels fetched here in {self.wheels_fetched_s:.1f} s" if self.wheels_fetched_s else ""
        what = f"installed the device install ({self.install_s:.1f} s{fetched})" if self.installed else "reused its venv"
        return f"ready in {self.seconds:.1f} s: {what}; sent {self.files_sent} files, {self.bytes_sent / 1e6:.2f} MB"


@dataclass(frozen=True)
class HostRun:
    """One host's part of a fleet run: the JSON its edgecnn commands printed, or the one line saying why it has none."""

    host: str
    payloads: dict[str, Any] = field(default_factory=dict)  # command → the JSON it printed (verify.json, bench.json, selftest)
    exit_code: int = 0
    error: str = ""
    facts: BoxFacts | None = None
    preparation: Preparation | None = None

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def device(self) -> dict[str, Any] | None:
        """The machine and runtime versions the host's own edgecnn reported (None: it ran nothing)."""
        return next((payload["machine"] | {"versions": payload.get("versions", {})} for payload in self.payloads.values() if "machine" in payload), None)

    def record(self) -> dict[str, Any]:
        return {"host": self.host, "status": "failed" if self.failed else "ran", "error": self.error, "exit_code": self.exit_code,
                "device": self.device(), "facts": asdict(self.facts) if self.facts else None,
                "preparation": asdict(self.preparation) if self.preparation else None}


Say = Callable[[str], None]


def prepare(box: Box, folder: str, files: dict[str, Path], digests: dict[str, str], timeout: float, say: Say) -> tuple[BoxFacts, Preparation]:
    """Make the box ready: its venv (once), edgecnn's code and `files` in `folder`, each sent only where it differs."""
    started = time.perf_counter()
    probed, sent = agent_json(box, "probe", timeout=timeout)
    facts = BoxFacts.from_probe(probed)
    facts.check(box.name)
    requirements = box_requirements(facts)
    venv = venv_name(facts, requirements)
    files_sent, installed, fetched_s, install_s = 0, False, 0.0, 0.0
    if venv not in facts.ready_venvs:
        say(f"{box.name}: {facts.cpu}, {facts.machine}, Python {facts.python_text}: preparing the device install ({len(requirements)} packages)")
        wheels = fetch_wheels(facts, requirements, box.name)
        synced = sync(box, f"wheels/{venv}", {path.name: path for path in wheels.files}, timeout=timeout)
        answer, install_sent = agent_json(box, "install", f"venvs/{venv}", f"wheels/{venv}", *requirements, timeout=timeout)
        files_sent, sent = files_sent + synced.files, sent + synced.bytes_sent + install_sent
        installed, fetched_s, install_s = bool(answer["installed"]), wheels.seconds, float(answer["seconds"])
    for target, wanted, known in (("code", *edgecnn_code()), (folder, files, digests)):
        synced = sync(box, target, wanted, known, timeout=timeout)
        files_sent, sent = files_sent + synced.files, sent + synced.bytes_sent
    preparation = Preparation(venv, installed, round(time.perf_counter() - started, 2), round(fetched_s, 2), install_s, files_sent, sent)
    say(f"{box.name}: {preparation.describe()}")
    return facts, preparation


def run_edgecnn(box: Box, venv: str, folder: str, arguments: Sequence[str], timeout: float) -> tuple[dict[str, Any], int]:
    """`edgecnn ARGUMENTS --json` on the box in `folder`: the JSON it printed and its exit code (0, 1 or 3)."""
    answer = call(box, "run", f"venvs/{venv}", "code", folder, *arguments, "--json", timeout=timeout)
    if answer.returncode not in VERDICT_EXIT_CODES:
        raise RemoteError(f"edgecnn {arguments[0]} exited {answer.returncode}: {last_line(answer.stderr) or 'no message'}", box.name)
    text = answer.stdout.decode(errors="replace")
    start = text.find("{")
    try:
        payload, _ = json.JSONDecoder().raw_decode(text[start:]) if start >= 0 else (None, 0)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise RemoteError(f"edgecnn {arguments[0]} printed no JSON report", box.name)
    return payload, answer.returncode


def on_fleet(remote: RemoteOptions, local: Callable[[], HostRun], remote_run: Callable[[Box, Say], HostRun], say: Say) -> list[HostRun]:
    """Each host's run, in the order named: `local` here first, then every box in parallel, one command at a time each."""
    boxes = [Box.parse(host, remote.ssh_config) for host in remote.hosts if host != THIS_MACHINE]
    runs: dict[str, HostRun] = {}
    if THIS_MACHINE in remote.hosts:
        runs[THIS_MACHINE] = local()

    def guarded(box: Box) -> HostRun:
        try:
            return remote_run(box, say)
        except RemoteError as exc:
            return HostRun(box.name, error=exc.what)

    with ThreadPoolExecutor(max_workers=max(1, len(boxes))) as pool:
        for box, run in zip(boxes, pool.map(guarded, boxes), strict=True):
            runs[box.name] = run
    return [runs[host] for host in remote.hosts]


def fleet_exit_code(runs: Sequence[HostRun]) -> int:
    """1 when a host failed or any verdict failed; 3 when some could only be INCONCLUSIVE; else 0 (verify's own rule)."""
    codes = {1 if run.failed else run.exit_code for run in runs}
    return 1 if 1 in codes else 3 if 3 in codes else 0


def run_arguments(run: RunOptions) -> list[str]:
    """The runtime options as the box's edgecnn reads them."""
    words = [word for runtime in run.runtimes for word in ("--runtime", runtime.value)]
    words += ["--provider", run.provider.value, "--tf32" if run.tf32 else "--no-tf32"]
    words += ["--device", run.device] if run.device is not None else []
    words += ["--threads", str(run.threads)] if run.threads else []
    return words + (["--allow-fallback"] if run.allow_fallback else [])


def export_folder(manifest_path: Path) -> tuple[str, dict[str, Path], dict[str, str]]:
    """The box's folder for this export (one per model, so boxes keep several) and the files it needs."""
    manifest = load_manifest(manifest_path)
    if manifest.model is None or manifest.model.reference is None:
        raise EdgecnnError("--remote verifies on the box against the stored reference, and this manifest has none (export again)", manifest_path)
    files, digests = export_files(manifest, manifest_path)
    return f"exports/{manifest.model.sha256[:16]}", files, digests


def with_host(rows: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    """A box's rows under the name the user gave it (its own report calls it `local`)."""
    return [row | {"host": host} for row in rows]


def every_host_rows(runs: Sequence[HostRun], command: str, key: str) -> list[dict[str, Any]]:
    """Every host's rows of one report (`command`'s `key` list), each named by its host; a failed host's one row."""
    return [row for run in runs for row in (with_host(run.payloads[command][key], run.host) if not run.failed else [failed_row(run)])]


def failed_row(run: HostRun) -> dict[str, Any]:
    """A host that could not run: its row in every fleet report, with the one line that says why."""
    return {"host": run.host, "status": "failed", HOST_ERROR: run.error, "device": None}


def fleet_record(runs: Sequence[HostRun]) -> dict[str, Any]:
    return {"created": utc_now(), "hosts": [run.record() for run in runs], "workstation": this_machine().to_dict(),
            "versions": library_versions()}


# verify ---------------------------------------------------------------------------------------------------------------


def verify_arguments(options: VerifyOptions) -> list[str]:
    thresholds = options.overrides
    words = ["verify", "--manifest", "manifest.json", *(word for name in options.artifacts for word in ("--artifact", name))]
    for flag, value in (("--max-drop", thresholds.max_drop_points), ("--min-agreement", thresholds.min_agreement), ("--atol", thresholds.atol)):
        words += [flag, repr(value)] if value is not None else []
    return words + ([] if options.verify_hash else ["--no-verify-hash"]) + run_arguments(options.run)


@dataclass(frozen=True)
class FleetVerify:
    runs: tuple[HostRun, ...]
    report_path: Path

    @property
    def exit_code(self) -> int:
        return fleet_exit_code(self.runs)


def verify_on_fleet(options: VerifyOptions, remote: RemoteOptions, say: Say) -> FleetVerify:
    """verify on every host; one verify.json beside the manifest with every host's rows."""
    remote.check()
    if options.corruptions:
        raise EdgecnnError("--corruptions compares with the Keras model, which a box does not run: run it here, without --remote", "--corruptions")
    if options.data is not None:
        say("--data stays on this machine: the boxes verify against the export folder's stored reference")
    folder, files, digests = export_folder(options.manifest)

    def here() -> HostRun:
        result = verify(replace(options, data=None))
        return HostRun(THIS_MACHINE, {"verify": read_json(result.report_path, "verify report")}, result.exit_code)

    def there(box: Box, say: Say) -> HostRun:
        facts, preparation = prepare(box, folder, files, digests, remote.timeout_s, say)
        payload, code = run_edgecnn(box, preparation.venv, folder, verify_arguments(options), remote.timeout_s)
        return HostRun(box.name, {"verify": payload}, code, facts=facts, preparation=preparation)

    runs = on_fleet(remote, here, there, say)
    rows = every_host_rows(runs, "verify", "artifacts")
    path = options.manifest.parent / VERIFY_FILENAME
    write_json_atomic(path, fleet_record(runs) | {"passed": fleet_exit_code(runs) == 0, "manifest": str(options.manifest), "artifacts": rows})
    return FleetVerify(tuple(runs), path)


# selftest -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetSelftest:
    runs: tuple[HostRun, ...]

    @property
    def exit_code(self) -> int:
        return 1 if any(run.failed or run.exit_code != 0 for run in self.runs) else 0

    def to_dict(self) -> dict[str, Any]:
        return fleet_record(self.runs) | {"results": [run.payloads["selftest"] | {"host": run.host} if not run.failed else failed_row(run)
                                                      for run in self.runs]}


def selftest_on_fleet(options: SelftestOptions, remote: RemoteOptions, say: Say) -> FleetSelftest:
    """The file's own golden check on every host: the file alone is sent, to a folder named by its sha256."""
    remote.check()
    model = Path(options.model)
    if not model.is_file():
        raise EdgecnnError(f"{model} does not exist", "MODEL")
    digest = sha256_file(model)
    folder = f"models/{digest[:16]}"

    def here() -> HostRun:
        result = selftest(options)
        return HostRun(THIS_MACHINE, {"selftest": result.to_dict()}, 0 if result.passed else 1)

    def there(box: Box, say: Say) -> HostRun:
        facts, preparation = prepare(box, folder, {model.name: model}, {model.name: digest}, remote.timeout_s, say)
        payload, code = run_edgecnn(box, preparation.venv, folder, ["selftest", model.name, *run_arguments(options.run)], remote.timeout_s)
        return HostRun(box.name, {"selftest": payload}, code, facts=facts, preparation=preparation)

    return FleetSelftest(tuple(on_fleet(remote, here, there, say)))


# bench ----------------------------------------------------------------------------------------------------------------


def bench_arguments(options: BenchOptions) -> list[str]:
    words = ["bench", "--manifest", "manifest.json", *(word for name in options.artifacts for word in ("--artifact", name))]
    words += ["--batch-sizes", ",".join(map(str, options.batch_sizes)), "--warmup", str(options.warmup), "--rounds", str(options.rounds)]
    words += ["--iterations", str(options.iterations)] if options.iterations is not None else []
    words += ["--seconds", repr(options.seconds)] if options.seconds is not None else []
    words += ["--memory" if options.memory else "--no-memory"] + (["--tune"] if options.tune else [])
    return words + ([] if options.verify_hash else ["--no-verify-hash"]) + run_arguments(options.run)


@dataclass(frozen=True)
class HostVerdict:
    """A row of a host's verify.json, as much as a recommendation reads of it (report/ship.py's Judged)."""

    name: str
    runtime: RuntimeName | None
    passed: bool
    delta_points: float | None
    agreement: float | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> HostVerdict:
        return cls(row["name"], RuntimeName(row["runtime"]) if row.get("runtime") else None, bool(row["passed"]), row.get("delta_points"),
                   row.get("agreement"))


@dataclass(frozen=True)
class FleetBench:
    runs: tuple[HostRun, ...]
    report_path: Path
    document_paths: tuple[Path, Path]  # fleet.md and fleet.html
    rows: tuple[BenchResult, ...]  # every host's, each naming its host
    ship: tuple[tuple[str, Recommendation], ...]  # per host: the fastest artifact that passed verify on that host, per target

    @property
    def passed(self) -> bool:
        return not any(run.failed or run.exit_code != 0 for run in self.runs)


def bench_on_fleet(options: BenchOptions, remote: RemoteOptions, say: Say) -> FleetBench:
    """bench on every host, after a verify there (what to ship on a box is what passed on that box); one bench.json
    with every host's rows, their verdicts and each host's preparation."""
    remote.check()
    if options.models or options.manifest is None:
        raise EdgecnnError("--remote benches a manifest's artifacts; for one file on a box, use edgecnn selftest FILE --remote HOST", "--model")
    if options.baseline_keras:
        raise EdgecnnError("--baseline keras times the Keras model, which a box does not run: run it here, without --remote", "--baseline")
    options.check()
    folder, files, digests = export_folder(options.manifest)
    verify_options = VerifyOptions(manifest=options.manifest, artifacts=options.artifacts, verify_hash=options.verify_hash, run=options.run)
    out = ensure_output_dir(options.out or options.manifest.parent, "--out")

    def here() -> HostRun:
        verified = verify(verify_options)
        benched = bench(replace(options, data=None, out=out))
        return HostRun(THIS_MACHINE, {"verify": read_json(verified.report_path, "verify report"), "bench": read_json(benched.report_path, "bench report")},
                       0 if benched.passed else 1)

    def there(box: Box, say: Say) -> HostRun:
        facts, preparation = prepare(box, folder, files, digests, remote.timeout_s, say)
        verified, _ = run_edgecnn(box, preparation.venv, folder, verify_arguments(verify_options), remote.timeout_s)
        say(f"{box.name}: verified; benchmarking")
        benched, code = run_edgecnn(box, preparation.venv, folder, bench_arguments(options), remote.timeout_s)
        return HostRun(box.name, {"verify": verified, "bench": benched}, code, facts=facts, preparation=preparation)

    runs = on_fleet(remote, here, there, say)
    entries = load_manifest(options.manifest).artifacts
    rows: list[BenchResult] = []
    ship: list[tuple[str, Recommendation]] = []
    for run in (run for run in runs if not run.failed):
        measured = [BenchResult.from_dict(row | {"host": run.host}) for row in run.payloads["bench"]["results"]]
        verdicts = [HostVerdict.of(row) for row in run.payloads["verify"]["artifacts"]]
        rows += measured
        ship += [(run.host, choice) for choice in recommend(verdicts, measured, entries)]
    path = out / BENCH_FILENAME
    record = fleet_record(runs)
    write_json_atomic(path, record | {
        "passed": not any(run.failed or run.exit_code for run in runs),
        "manifest": str(options.manifest),
        "results": every_host_rows(runs, "bench", "results"),
        "verdicts": [row for run in runs if not run.failed for row in with_host(run.payloads["verify"]["artifacts"], run.host)],
        "what_to_ship": [{"host": host} | recommendation_record(choice) for host, choice in ship],
        "settings": {run.host: run.payloads["bench"]["settings"] for run in runs if not run.failed},
    })
    documents = write_report(out, f"edgecnn bench on {len(runs)} host{'s' if len(runs) > 1 else ''}", fleet_sections(record["hosts"], rows, ship),
                             stem=FLEET_REPORT)
    return FleetBench(tuple(runs), path, documents, tuple(rows), tuple(ship))


def recommendation_record(choice: Recommendation) -> dict[str, Any]:
    return asdict(choice) | {"target": choice.target.value, "backend": choice.backend.label}
