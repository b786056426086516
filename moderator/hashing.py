"""Content hashes of files and model folders: how a run names the exact weights it used.

`tree_sha256` is a model's identity (audit lines, manifests, checkpoints and state fingerprints
record it): sha256 over a folder's files, their relative names and contents, stable across
machines. It is cached per process by the files' sizes and modification times, so a folder is
hashed once however many steps name it.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

SKIPPED_FOLDERS = {".cache", "__pycache__", ".git", ".locks"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    """sha256 over a folder's files (relative names and contents), stable across machines."""
    files = _tree_files(path)
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _tree_sha256_cached(str(path), stamp)


def _tree_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_FOLDERS)
        files.extend(Path(dirpath) / name for name in sorted(filenames) if not name.endswith(".lock"))
    return sorted(files)


@functools.lru_cache(maxsize=64)
def _tree_sha256_cached(path: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for file in _tree_files(Path(path)):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(file_sha256(file).encode())
        digest.update(b"\n")
    return digest.hexdigest()
