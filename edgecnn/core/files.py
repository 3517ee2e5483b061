"""Hashing, output folders and atomic writes.

Artifacts are what apps embed, so a file either appears whole or not at all: every write goes to a temp file in
the destination folder and is renamed into place (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_output_dir(path: Path, option: str = "--out") -> Path:
    """Create the output folder, or say clearly why it cannot be used."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgecnnError(f"output folder {path} is a file, not a folder", option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgecnnError(f"cannot create output folder {path}: {exc.strerror or exc}", option) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise EdgecnnError(f"output folder {path} is not writable", option)
    return path


TEMP_NAMES = itertools.count()  # with the process id: a temp name no other writer picks


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temp path beside `destination`; rename it into place only if the block succeeds.

    The temp name keeps the destination's extension, which some writers insist on (Keras only saves to ``*.keras``).
    It is created exclusively with mode 0666 less the umask, as any file we write (artifacts are meant to be shared),
    without the tempfile module: with `random` and `shutil` behind it, it costs `predict --output` ~5 ms.
    """
    destination = Path(destination)
    while True:
        temp_path = destination.with_name(f".{destination.name}.{os.getpid()}.{next(TEMP_NAMES)}.tmp{destination.suffix}")
        try:
            os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue  # left behind by an earlier process that had this id
        except OSError as exc:
            raise EdgecnnError(f"cannot write into {destination.parent}: {exc.strerror or exc}", destination) from None
    try:
        yield temp_path
        os.replace(temp_path, destination)
    finally:
        temp_path.unlink(missing_ok=True)


def write_bytes_atomic(destination: Path, data: bytes) -> None:
    with atomic_path(destination) as temp:
        temp.write_bytes(data)


def write_json_atomic(destination: Path, payload: Any) -> None:
    write_bytes_atomic(destination, (json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file we wrote earlier, turning every way it can be broken into a user error."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"{what} not found", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgecnnError(f"{what} is not valid JSON: {exc}", path) from None
