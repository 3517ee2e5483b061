"""Copying a folder's files to the box, only those whose sha256 differs from what the box already holds.

The box lists what it has (`agent.py listing`), this side sends one tar of the files that differ, and the box checks
every file against the sha256 this side expects and removes files that are no longer part of the folder. An export
folder's artifacts are checked against the manifest's sha256 before anything is sent.
"""

from __future__ import annotations

import functools
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.files import sha256_file
from edgecnn.core.manifest import Manifest
from edgecnn.remote.ssh import Box, agent_json

PACKAGE = Path(__file__).resolve().parents[1]  # edgecnn's own code, sent to the box as it runs here


@dataclass(frozen=True)
class Synced:
    files: int  # how many files were sent
    bytes_sent: int  # everything sent for this folder, the listing call included


def sync(box: Box, folder: str, files: Mapping[str, Path], digests: Mapping[str, str] | None = None, timeout: float | None = None) -> Synced:
    """Make the box's `folder` (under its cache root) hold exactly `files` ({relative name: local path})."""
    digests = dict(digests) if digests is not None else {name: sha256_file(path) for name, path in files.items()}
    present, sent = agent_json(box, "listing", folder, timeout=timeout)
    changed = sorted(name for name in files if present.get(name) != digests[name])
    if not changed and set(present) == set(files):
        return Synced(0, sent)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name in changed:
            tar.add(files[name], arcname=name, recursive=False)
    _, received = agent_json(box, "receive", folder, json.dumps(digests, sort_keys=True), stdin=archive.getvalue(), timeout=timeout)
    return Synced(len(changed), sent + received)


@functools.cache
def edgecnn_code() -> tuple[dict[str, Path], dict[str, str]]:
    """edgecnn's package as this machine runs it (its sources and package data, not caches) and their sha256: read once
    for a whole fleet."""
    files = {f"edgecnn/{path.relative_to(PACKAGE).as_posix()}": path for path in sorted(PACKAGE.rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}
    return files, {name: sha256_file(path) for name, path in files.items()}


def export_files(manifest: Manifest, manifest_path: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """What a box needs of an export folder: the manifest, every artifact (its sha256 as the manifest records it) and the
    stored reference. Never the Keras model or the data: the box runs no TensorFlow."""
    files = {"manifest.json": manifest_path}
    digests = {"manifest.json": sha256_file(manifest_path)}
    for entry in manifest.artifacts:
        files[entry.path] = manifest.open(entry, verify_hash=True)
        digests[entry.path] = entry.sha256
    reference = manifest.model.reference if manifest.model is not None else None
    if reference is not None:
        files[reference.path] = manifest.resolve(reference.path)
        digests[reference.path] = reference.sha256
    return files, digests
