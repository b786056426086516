"""Shared fixtures: tiny models built once per session, inputs written per test. No network, no GPU."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Before anything imports transformers or vLLM: offline, quiet, and vLLM-CPU's small-machine settings.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(tempfile.gettempdir(), "moderator-tests-vllm-cache"))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

import tiny_models  # noqa: E402
from moderator.config import JobConfig  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

POSTS = [
    "you are a complete idiot and everyone hates your stupid posts",
    "thanks for the detailed answer, it solved my problem",
    "shut up, nobody asked for your worthless opinion",
    "the meeting is moved to thursday afternoon",
    "what a pathetic loser, go away",
    "i think the second option is better for beginners",
]


@dataclass(frozen=True)
class Tiny:
    classifier: Path
    multilabel: Path
    decoder: Path
    adapter: Path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    root = tmp_path_factory.mktemp("tiny-models")
    decoder = tiny_models.build_llama_decoder(root / "decoder")
    return Tiny(
        classifier=tiny_models.build_bert_classifier(root / "classifier"),
        multilabel=tiny_models.build_bert_classifier(
            root / "multilabel", labels=("toxic", "insult", "threat", "neutral"), multi_label=True
        ),
        decoder=decoder,
        adapter=tiny_models.build_lora_adapter(decoder, root / "adapter"),
    )


def tiny_config(tiny: Tiny, **sections: dict) -> JobConfig:
    """A config that uses the tiny models and the transformers engine, plus any overrides. The
    rewritability model is off unless a test turns it on: a tiny classifier's random scores make
    toxic posts of any text, and the tests that use this config check the machinery around the
    models (tests/test_rewrite_first.py runs the bundled rewritability model)."""
    layers: dict[str, dict] = {
        "classifier": {"model": str(tiny.classifier)},
        "policy": {"rewritability_model": "off"},
        "rewriter": {"base": str(tiny.decoder), "adapter": str(tiny.adapter), "engine": "hf",
                     "max_new_tokens": 12},
    }
    for name, values in sections.items():
        layers.setdefault(name, {}).update(values)
    return JobConfig.load(overrides=layers)


@pytest.fixture(scope="session")
def hf_models(tiny: Tiny):
    """Every model loaded once (transformers engine), for tests that run many small pipelines."""
    from moderator.steps import load_models

    return load_models(tiny_config(tiny))


def write_parquet(path: Path, columns: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def write_jsonl(path: Path, rows: list, raw_lines: list[bytes] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows) + b"".join(raw_lines or [])
    codec = {".gz": "gzip", ".zst": "zstd"}.get(path.suffix)
    if codec is None:
        path.write_bytes(data)
    else:
        with pa.CompressedOutputStream(str(path), codec) as stream:
            stream.write(data)
    return path


def read_output(run_dir: Path) -> pa.Table:
    parts = sorted((run_dir / "output").iterdir())
    tables = []
    for part in parts:
        if part.suffix == ".parquet":
            tables.append(pq.read_table(part))
        else:
            rows = [json.loads(line) for line in part.read_text().splitlines()]
            tables.append(pa.Table.from_pylist(rows))
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def record_shapes(monkeypatch: pytest.MonkeyPatch, model) -> list[tuple[int, ...]]:
    """The input_ids shapes `model` is called with from now on (for the padded-shape tests)."""
    shapes: list[tuple[int, ...]] = []
    forward = model.forward

    def spy(**inputs):
        shapes.append(tuple(inputs["input_ids"].shape))
        return forward(**inputs)

    monkeypatch.setattr(model, "forward", spy)
    return shapes
