"""Loading and saving the rewriter's language model with transformers: one loader for every user.

The transformers engine (`engines.HFEngine`), the adapter merge (`merge.py`) and training
(`train/detox.py`, `train/prefer.py`) load a base the same way: its tokenizer, the model class its
config asks for (`AutoModelForSeq2SeqLM` for encoder-decoder bases such as T5 or BART,
`AutoModelForCausalLM` otherwise), optionally a PEFT adapter on top, and a pad token where the
tokenizer has none (the end-of-sequence token: batches are padded). Saving a model for vLLM is
`model_cache.store_tied_embedding`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moderator.models import read_json


def is_seq2seq(path: Path) -> bool:
    """Whether the model folder holds an encoder-decoder (its config.json says is_encoder_decoder)."""
    config = read_json(path / "config.json") if (path / "config.json").exists() else {}
    return bool(config.get("is_encoder_decoder"))


def load_lm(path: Path, dtype: Any, adapter: Path | None = None, pad: bool = True) -> tuple[Any, Any, bool]:
    """(model, tokenizer, is_seq2seq) of the base at `path` in `dtype` (a torch.dtype), with the PEFT
    adapter at `adapter` applied. `pad`: give a tokenizer without a pad token the end-of-sequence
    token as one (off for a model that is saved again as it was loaded).

    Raises what transformers and PEFT raise for a folder they cannot load (OSError, ValueError,
    KeyError); callers name the model in their own error."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    seq2seq = is_seq2seq(Path(path))
    tokenizer = AutoTokenizer.from_pretrained(path)
    loader = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model = loader.from_pretrained(path, dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    if pad and tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, seq2seq

