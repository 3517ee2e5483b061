"""The box's side of `--remote`: a standard-library script the workstation runs there as `python3 -c <this file> OP ARGS`.

It is the only code that runs on the box before edgecnn's own is there, so it imports nothing of edgecnn and keeps
to syntax that Python 3.6 parses: `probe` must still answer on a box whose Python is too old, so that the workstation
can say which Python is needed. Every path it touches is under the cache root (`$XDG_CACHE_HOME/edgecnn`, by default
`~/.cache/edgecnn`); it refuses any other.

Operations (each prints one JSON object, or exits non-zero with one line on stderr):
  probe                         the box's Python, platform tags and device facts
  listing DIR                   {relative path: sha256} of the files under DIR
  receive DIR EXPECTED          a tar on stdin (regular files only, relative names) into DIR; then every file under
                                DIR must be one of EXPECTED ({path: sha256}, JSON) with that hash, and others go
  install VENV WHEELS REQS...   a venv at VENV (reused when its requirements are the same) from the wheels in WHEELS,
                                with pip run from its own wheel, never from the network; WHEELS and older venvs
                                go afterwards
  run VENV CODE DIR ARGS...     `python -m edgecnn ARGS` in the venv, with edgecnn's code from CODE, in DIR
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time

MARKER = "edgecnn-requirements.json"  # written last into a venv: the install finished, with these requirements


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "edgecnn")


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(2)


def under_root(relative):
    """The absolute path of `relative` inside the cache root; anything absolute or climbing out of it is refused."""
    parts = relative.replace("\\", "/").split("/")
    if not relative or relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        fail(f"edgecnn agent: refused path {relative!r}: only plain relative paths under the cache root")
    return os.path.join(cache_root(), *parts)


def first_line(path, prefix):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":" if ":" in line else "=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def probe():
    memory_kib = first_line("/proc/meminfo", "MemTotal").split(" ")[0]
    cpu = first_line("/proc/cpuinfo", "model name") or first_line("/proc/cpuinfo", "Model") or platform.processor() or platform.machine()
    libc, libc_version = platform.libc_ver()
    return {
        "python": list(sys.version_info[:3]),
        "implementation": platform.python_implementation().lower(),
        "executable": sys.executable,
        "system": platform.system(),
        "machine": platform.machine(),
        "libc": libc,
        "libc_version": libc_version,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mib": int(memory_kib) // 1024 if memory_kib.isdigit() else None,
        "os": first_line("/etc/os-release", "PRETTY_NAME") or platform.platform(),
        "hostname": platform.node(),
        "nvidia": os.path.exists("/proc/driver/nvidia/version"),
        "root": cache_root(),
        "ready_venvs": ready_venvs(),
    }


def ready_venvs():
    """The venvs a finished install left (its requirements file is written last)."""
    folder = os.path.join(cache_root(), "venvs")
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if os.path.exists(os.path.join(folder, name, MARKER)))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listing(relative):
    folder = under_root(relative)
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found[os.path.relpath(path, folder).replace(os.sep, "/")] = sha256(path)
    return found


def receive(relative, expected_json):
    folder = under_root(relative)
    expected = json.loads(expected_json)
    os.makedirs(folder, exist_ok=True)
    received = 0
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
        for member in archive:
            if not member.isfile() or member.name not in expected:
                fail(f"edgecnn agent: refused {member.name!r} in the archive: only the regular files that were listed")
            target = os.path.join(folder, *member.name.split("/"))
            under_root(relative + "/" + member.name)  # the same check on the name, against the root
            os.makedirs(os.path.dirname(target), exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file always has its bytes
            partial = target + ".partial"
            with open(partial, "wb") as handle:
                shutil.copyfileobj(source, handle)
            os.replace(partial, target)
            received += 1
    present = listing(relative)
    for name in set(present) - set(expected):
        os.remove(os.path.join(folder, *name.split("/")))
    wrong = sorted(name for name, digest in expected.items() if present.get(name) != digest)
    if wrong:
        fail(f"edgecnn agent: {len(wrong)} file(s) differ from their sha256 after the copy, first {wrong[0]}")
    return {"received": received, "removed": len(set(present) - set(expected))}


def venv_python(folder):
    return os.path.join(folder, "bin", "python")


def install(venv_relative, wheels_relative, requirements):
    venv = under_root(venv_relative)
    wheels = under_root(wheels_relative)
    marker = os.path.join(venv, MARKER)
    wanted = sorted(requirements)
    try:
        with open(marker) as handle:
            if json.load(handle) == wanted and os.path.exists(venv_python(venv)):
                return {"installed": False, "seconds": 0.0}
    except (OSError, ValueError):
        pass
    started = time.time()
    shutil.rmtree(venv, ignore_errors=True)
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if made.returncode != 0:
        fail("edgecnn agent: python3 -m venv failed: {}".format(made.stdout.decode(errors="replace").strip().splitlines()[-1:]))
    pip_wheels = sorted(name for name in os.listdir(wheels) if name.startswith("pip-") and name.endswith(".whl"))
    if not pip_wheels:
        fail("edgecnn agent: no pip wheel among the wheels sent")
    command = [venv_python(venv), os.path.join(wheels, pip_wheels[-1], "pip"), "install", "--no-index", "--find-links", wheels,
               "--disable-pip-version-check", "--no-warn-script-location", "--quiet"] + wanted
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.strip()]
        shutil.rmtree(venv, ignore_errors=True)
        fail("edgecnn agent: pip install from the wheels sent failed: {}".format(lines[-1] if lines else "no output"))
    with open(marker, "w") as handle:
        json.dump(wanted, handle)
    shutil.rmtree(wheels, ignore_errors=True)  # a small box's disk: the venv holds what they brought
    for older in ready_venvs():  # and one venv at a time (~290 MB on x86-64): an edgecnn that needs other packages replaces it
        if os.path.join(cache_root(), "venvs", older) != venv:
            shutil.rmtree(os.path.join(cache_root(), "venvs", older), ignore_errors=True)
    return {"installed": True, "seconds": round(time.time() - started, 2)}


def run(venv_relative, code_relative, work_relative, arguments):
    python = venv_python(under_root(venv_relative))
    environment = dict(os.environ, PYTHONPATH=under_root(code_relative), PYTHONNOUSERSITE="1")
    os.chdir(under_root(work_relative))
    os.execve(python, [python, "-m", "edgecnn"] + arguments, environment)


def main(arguments):
    operation, rest = (arguments[0], arguments[1:]) if arguments else ("", [])
    if operation == "probe":
        answer = probe()
    elif operation == "listing" and len(rest) == 1:
        answer = listing(rest[0])
    elif operation == "receive" and len(rest) == 2:
        answer = receive(rest[0], rest[1])
    elif operation == "install" and len(rest) >= 3:
        answer = install(rest[0], rest[1], rest[2:])
    elif operation == "run" and len(rest) >= 3:
        run(rest[0], rest[1], rest[2], rest[3:])
        return
    else:
        fail("edgecnn agent: unknown operation {!r}".format(" ".join(arguments)))
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
