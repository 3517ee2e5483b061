"""What `--remote` costs to prepare a box: a fresh box (no venv, no code, no export folder) against the same box again.

Starts Debian's OpenSSH server on 127.0.0.1 with a throwaway key (tests/sshbox.py), runs `edgecnn verify --remote` on
it twice, and prints each run's preparation (seconds, wheels fetched here, install, files and bytes sent) from
verify.json, with the second run's share of the first's bytes and time. Targets, measured in this run: the second run
sends at most 1% of the first's bytes and takes at most half its preparation time.

    python bench/remote_prepare.py --manifest exports/manifest.json [--cold-wheels]

--cold-wheels: this machine's wheel and pip caches start empty too (a real download from PyPI).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sshbox import client, start_box  # noqa: E402

MAX_BYTES_SHARE = 0.01
MAX_TIME_SHARE = 0.5


def verify_remote(manifest: Path, config: Path, environment: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "edgecnn", "verify", "--manifest", str(manifest), "--remote", "box", "--ssh-config", str(config)],
                          capture_output=True, text=True, env=environment, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"verify --remote failed ({done.returncode}): {done.stderr.strip()}")
    print(done.stderr.strip())
    return json.loads((manifest.parent / "verify.json").read_text())["hosts"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--cold-wheels", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="edgecnn-remote-bench-"))
    try:
        manifest = scratch / "exports" / "manifest.json"
        shutil.copytree(args.manifest.parent, manifest.parent, ignore=shutil.ignore_patterns(".cache"))
        user_key, config = client(scratch / "client")
        box = start_box("box", scratch / "box", user_key, config)
        environment = dict(os.environ) | ({"XDG_CACHE_HOME": str(scratch / "workstation-cache")} if args.cold_wheels else {})
        try:
            fresh = verify_remote(manifest, config, environment)
            again = verify_remote(manifest, config, environment)
        finally:
            box.stop()
        facts, first, second = fresh["facts"], fresh["preparation"], again["preparation"]
        print(f"box: {facts['cpu']}, {facts['cores']} cores, {facts['os']}, Python {'.'.join(map(str, facts['python']))} (sshd on 127.0.0.1)")
        for label, run in (("fresh box", first), ("same box again", second)):
            print(f"{label:15s} prepared in {run['seconds']:6.2f} s (wheels fetched here {run['wheels_fetched_s']:.2f} s, install on the box "
                  f"{run['install_s']:.2f} s), {run['files_sent']} files, {run['bytes_sent'] / 1e6:8.3f} MB sent")
        bytes_share, time_share = second["bytes_sent"] / first["bytes_sent"], second["seconds"] / first["seconds"]
        print(f"second run / first: bytes {bytes_share:.4f} (target ≤ {MAX_BYTES_SHARE}: {'PASS' if bytes_share <= MAX_BYTES_SHARE else 'MISS'}), "
              f"time {time_share:.3f} (target ≤ {MAX_TIME_SHARE}: {'PASS' if time_share <= MAX_TIME_SHARE else 'MISS'})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
