"""A LoRA adapter merged into its base, for engines that serve it faster as one plain model.

vLLM-CPU applies a LoRARequest through the PyTorch fallbacks of its punica kernels: every LoRA
linear layer copies the adapter's A and B matrices once per token of the step
(`lora_weights[token_indices]`) before a batched matmul, and vLLM turns torch.compile off for the
whole model when LoRA is enabled. With the bundled adapter (rank 16 on every linear layer of
Gemma-3-270M) those copies took about two thirds of the run, and vLLM served it about 5x slower
than the same weights merged (see benchmarks/rewrite_throughput.py and the README).

Merging computes W + scale * B @ A once (PEFT's `merge_and_unload`, in float32), stores the result
in the dtype the engine will serve, and caches it under $MODERATOR_CACHE keyed by the base's and the
adapter's content hashes (`model_cache.build_once`); like the converted pip base, it is verified by
hash on every use. The run still names the base and the adapter by their own hashes; the merged
model is recorded beside them (the manifest's `served_rewriter`).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from moderator.causal_lm import load_lm
from moderator.errors import ModelError
from moderator.model_cache import build_once, recorded_sha256, store_tied_embedding
from moderator.models import ModelRef

log = logging.getLogger(__name__)


def merged_model(base: ModelRef, adapter: ModelRef, dtype: Any) -> ModelRef:  # dtype: torch.dtype
    """Base + adapter merged (built on first use, then reused), as a model reference of its own."""
    dtype_name = str(dtype).removeprefix("torch.")
    name = f"merged-{base.sha256[:16]}-{adapter.sha256[:16]}-{dtype_name}"

    def build(out: Path) -> dict[str, Any]:
        log.info("merging adapter %s into %s (once) as %s", adapter.ref, base.ref, out.name)
        _merge(base, adapter, dtype, out)
        return {"merged_from": {"base": base.ref, "base_sha256": base.sha256, "adapter": adapter.ref,
                                "adapter_sha256": adapter.sha256, "dtype": dtype_name}}

    folder = build_once(name, build)
    return ModelRef(ref=f"merged:{base.ref}+{adapter.ref}", path=folder, sha256=recorded_sha256(folder))


def _merge(base: ModelRef, adapter: ModelRef, dtype: Any, out: Path) -> None:
    import torch

    try:
        model, tokenizer, _ = load_lm(base.path, torch.float32, adapter.path, pad=False)
        model = model.merge_and_unload()
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"adapter {adapter.ref!r}: cannot merge into {base.ref!r} ({str(exc).splitlines()[0]})") from None
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # a complete model folder, loadable on its own
    del model
    gc.collect()
    store_tied_embedding(out)
