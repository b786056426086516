"""Model folders built once and cached: the converted pip base, a base with its adapter merged.

A cached folder lives under $MODERATOR_CACHE (default ~/.cache/moderator). It is built by a
function into an empty temporary folder, gets a marker file that records what it was made from and
the hash of its files, and appears under its name only when complete (atomic rename); a lock keeps
two processes from building it at once. Every later use checks the files against the recorded hash
and builds the folder again when they differ. Both kinds are served by vLLM, which reads a tied
embedding only under its own name: `store_tied_embedding` stores it so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moderator.hashing import file_sha256

log = logging.getLogger(__name__)

# The marker's file name is part of every cached folder, and so of its content hash (the model's
# identity in manifests and audit lines): it keeps the name it was given when the folders were
# called checkpoints.
MARKER = "moderator-checkpoint.json"


def cache_dir() -> Path:
    return Path(os.environ.get("MODERATOR_CACHE", "~/.cache/moderator")).expanduser()


def build_once(name: str, build: Callable[[Path], dict[str, Any]]) -> Path:
    """The model folder `name` under the cache: built once by `build(folder)`, verified on every use.

    `build` writes the model into an empty temporary folder and returns what it was made from;
    that goes into the folder's marker file with the hash of its files. The folder appears under its
    name only when complete (atomic rename), and a lock keeps two processes from building it at once.
    """
    folder = cache_dir() / name
    if _verified(folder):
        return folder
    with _locked(cache_dir() / f".{name}.lock"):
        if _verified(folder):  # another process built it while we waited
            return folder
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
        try:
            provenance = build(tmp)
            (tmp / MARKER).write_text(json.dumps({**provenance, "sha256": _folder_sha256(tmp)}, indent=2) + "\n")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def recorded_sha256(folder: Path) -> str:
    """The content hash a cached folder's marker records (checked by `build_once`)."""
    return json.loads((folder / MARKER).read_text())["sha256"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _verified(folder: Path) -> bool:
    try:
        recorded = json.loads((folder / MARKER).read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return False
    actual = _folder_sha256(folder)
    if actual != recorded:
        log.warning("%s: cached model folder does not match its recorded hash; building it again", folder)
        return False
    return True


def _folder_sha256(folder: Path) -> str:
    """Hash of the folder's files, the marker itself left out."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MARKER):
        digest.update(f"{file.name}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def store_tied_embedding(folder: Path) -> None:
    """Store a tied embedding under the name vLLM reads (a plain save may keep only lm_head.weight)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights_file = folder / "model.safetensors"
    if not weights_file.exists():  # sharded saves keep their names as saved
        return
    with safe_open(weights_file, "pt") as handle:
        names = set(handle.keys())
    if "model.embed_tokens.weight" in names or "lm_head.weight" not in names:
        return
    tensors = load_file(weights_file)
    tensors["model.embed_tokens.weight"] = tensors.pop("lm_head.weight")
    save_file(tensors, weights_file, metadata={"format": "pt"})
