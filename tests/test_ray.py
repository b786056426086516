"""The Ray executor: a local Ray cluster on this machine (CPU only) gives exactly a local run's output.

These tests start Ray in this process (2 CPUs, no dashboard). Where Ray is not installed they are
skipped, unless MODERATOR_REQUIRE_RAY=1 (set by CI), where that fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import POSTS, read_lines, read_output, tiny_config, write_jsonl, write_parquet

from moderator.executors import ray as ray_executor
from moderator.checkpoint import Checkpoint
from moderator.cli import cli
from moderator.config import JobConfig
from moderator.errors import ConfigError, OutputError
from moderator.outputs import Outputs
from moderator.pipeline import run

pytestmark = pytest.mark.slow

if importlib.util.find_spec("ray") is None:
    if os.environ.get("MODERATOR_REQUIRE_RAY") == "1":
        raise RuntimeError("MODERATOR_REQUIRE_RAY=1 but Ray is not installed (pip install 'moderator[ray]')")
    pytest.skip("Ray is not installed", allow_module_level=True)

VOLATILE = ("run_id", "time", "prev_sha256")  # audit fields that differ between two runs of the same job


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    import ray

    with pytest.MonkeyPatch.context() as patch:
        # The local cluster's workers inherit this: what they cache (merged checkpoints of the test
        # models, converted pip models) goes to a temporary folder, not the user's model cache.
        patch.setenv("MODERATOR_CACHE", str(tmp_path_factory.mktemp("cache")))
        ray_executor.connect(JobConfig(), num_cpus=2, object_store_memory=256 * 1024**2)
        yield ray
        ray.shutdown()


def make_inputs(folder: Path) -> list[Path]:
    """Parquet with null and empty texts, JSONL with bad lines and a key that appears late: several batches."""
    texts = [f"{POSTS[i % len(POSTS)]} #{i}" for i in range(45)]
    texts[3], texts[30] = None, "  "
    a = write_parquet(folder / "a.parquet", {"id": [f"a{i}" for i in range(45)], "text": texts,
                                              "n": list(range(45))})
    rows = [{"text": f"{POSTS[(i * 5) % len(POSTS)]} ({i})", **({"extra": i} if i > 12 else {})} for i in range(20)]
    b = write_jsonl(folder / "b.jsonl", rows, [b"not json\n", b'{"text": 5}\n'])
    return [a, b]


def snapshot(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {
        "rows": read_output(run_dir).to_pylist(),
        "audit": [{k: v for k, v in line.items() if k not in VOLATILE} for line in read_lines(run_dir / "audit.jsonl")],
        "quarantine": read_lines(run_dir / "quarantine.jsonl"),
        "parts": manifest["output"]["parts"],
        "inputs": manifest["inputs"],
        "counts": manifest["counts"],
        "models": manifest["models"],
        "engine": manifest["engine"],
    }


def assert_same(ray_run: Path, local_run: Path) -> None:
    got, want = snapshot(ray_run), snapshot(local_run)
    for key in want:
        assert got[key] == want[key], key
    verified = CliRunner().invoke(cli, ["audit", "verify", str(ray_run)])
    assert verified.exit_code == 0, verified.output
    assert json.loads((ray_run / "manifest.json").read_text())["executor"] == "ray"


def test_ray_executor_gives_the_local_run_with_tiny_models(tiny, hf_models, ray_cluster, tmp_path):
    inputs = list(map(str, make_inputs(tmp_path / "in")))
    base = {"input": {"batch_size": 8}, "output": {"rows_per_shard": 12, "format": "parquet"},
            "policy": {"min_similarity": -1.0, "max_rewrite_toxicity": 1.0}}
    probe = run(tiny_config(tiny, **base), inputs, tmp_path / "probe", models=hf_models)
    scores = sorted(m["toxicity"] for m in read_output(probe.path).column("moderation").to_pylist())
    policy = {**base["policy"], "rewrite_threshold": scores[len(scores) // 3],
              "remove_threshold": scores[5 * len(scores) // 6]}  # some of each: allow, rewrite, remove
    local = run(tiny_config(tiny, **{**base, "policy": policy}), inputs, tmp_path / "local", models=hf_models)
    on_ray = run(tiny_config(tiny, **{**base, "policy": policy}, runtime={"executor": "ray"}), inputs,
                 tmp_path / "ray")
    actions = local.manifest["counts"]["actions"]
    assert actions["allow"] and actions["rewrite"] and actions["remove"], actions
    assert local.manifest["counts"]["quarantined_rows"] == 4 and len(local.manifest["output"]["parts"]) > 3
    assert_same(on_ray.path, local.path)
    assert on_ray.manifest["timings_s"]["classify"] > 0 and on_ray.manifest["timings_s"]["rewrite"] > 0


def test_ray_executor_resumes_a_failed_run_from_its_checkpoint(tiny, ray_cluster, tmp_path, monkeypatch):
    """A Ray run that failed half-way continues from its checkpoint (the read tasks start at the
    recorded position) to exactly what an uninterrupted run gives."""
    inputs = list(map(str, make_inputs(tmp_path / "in")))
    config = tiny_config(tiny, input={"batch_size": 8}, output={"rows_per_shard": 5, "format": "parquet"},
                         rewriter={"enabled": False}, runtime={"executor": "ray"})
    reference = run(config, inputs, tmp_path / "reference")
    out = tmp_path / "run"
    calls = []
    original = Outputs.write

    def failing(self, batch, file_index, first_row):
        calls.append(file_index)
        if len(calls) == 9:  # a.parquet is 6 batches: this is b.jsonl's third
            raise OutputError("disk full")
        return original(self, batch, file_index, first_row)

    with monkeypatch.context() as patch:
        patch.setattr(Outputs, "write", failing)
        with pytest.raises(OutputError, match="disk full"):
            run(config, inputs, out)
    checkpoint = Checkpoint.load(out / ".partial")
    assert checkpoint.position[0] == 1 and checkpoint.position[1] > 0, checkpoint.position
    resumed = run(config, inputs, out)
    assert resumed.manifest["run_id"] == checkpoint.run_id and len(resumed.manifest["resumed"]) == 1
    assert_same(out, reference.path)


@pytest.mark.parametrize("engine", ["hf"])
def test_cli_executor_ray_with_the_bundled_models_matches_local(ray_cluster, tmp_path, engine):
    """The real default models (fp32, greedy) on a handful of posts, through `moderate batch`."""
    posts = ["you are a complete idiot and everyone hates your stupid posts",
             "thanks for the detailed answer, it solved my problem",
             "shut up, nobody asked for your worthless opinion, moron",
             "the meeting is moved to thursday afternoon",
             "what a pathetic loser, go away"]
    path = write_parquet(tmp_path / "posts.parquet", {"id": [f"p{i}" for i in range(len(posts))], "text": posts})
    job = tmp_path / "job.toml"
    # float32 and as many torch threads in the actors as in the local run: with another thread count
    # the matrix products may round differently (scores then differ in the last bits, 2e-9 seen).
    job.write_text('[classifier]\ndtype = "float32"\n[rewriter]\ndtype = "float32"\n[runtime]\nthreads = 2\n'
                   "[policy]\nremove_threshold = 1.0\n")  # rewrite the toxic posts rather than remove them
    outs = {}
    for executor in ("local", "ray"):
        outs[executor] = tmp_path / executor
        result = CliRunner().invoke(cli, ["batch", str(path), "--out", str(outs[executor]), "--config", str(job),
                                          "--engine", engine, "--executor", executor, "-q"])
        assert result.exit_code == 0, result.output
    assert_same(outs["ray"], outs["local"])
    moderation = read_output(outs["ray"]).column("moderation").to_pylist()
    assert sum(m["rewrite"] is not None for m in moderation) >= 2  # the toxic posts really were rewritten


@pytest.mark.parametrize("serving", ["request", "merged"])
def test_ray_rewrite_actors_run_a_vllm_engine_each_and_match_a_local_vllm_run(tiny, ray_cluster, tmp_path, serving):
    """The rewrite actors build vLLM engines (the default engine) in Ray worker processes, with the
    adapter as a LoRARequest (the GPU default) or merged into a cached checkpoint (the CPU default)."""
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("MODERATOR_REQUIRE_VLLM") == "1":
            raise RuntimeError("MODERATOR_REQUIRE_VLLM=1 but vLLM is not installed")
        pytest.skip("vLLM is not installed")
    inputs = list(map(str, make_inputs(tmp_path / "in")))
    sections = {"input": {"batch_size": 16}, "output": {"rows_per_shard": 20},
                "rewriter": {"engine": "vllm", "lora_serving": serving, "dtype": "float32",
                             "max_model_len": 256, "max_new_tokens": 12},
                "policy": {"rewrite_threshold": 0.0, "remove_threshold": 1.0, "min_similarity": -1.0,
                           "max_rewrite_toxicity": 1.0}}  # every post is rewritten
    cache = Path(os.environ["MODERATOR_CACHE"])  # the cluster's (see ray_cluster)
    before = set(cache.rglob("merged-*"))
    on_ray = run(tiny_config(tiny, **sections, runtime={"executor": "ray"}), inputs, tmp_path / "ray")
    if serving == "merged":  # an actor merged base and adapter (first), into the cluster's cache
        assert set(cache.rglob("merged-*")) - before
    local = run(tiny_config(tiny, **sections), inputs, tmp_path / "local")
    assert local.manifest["engine"] == on_ray.manifest["engine"] == "vllm"
    assert local.manifest["served_rewriter"]["lora_serving"] == serving
    assert local.manifest["counts"]["actions"]["rewrite"] == 63  # 67 rows, 4 quarantined
    assert_same(on_ray.path, local.path)


def test_without_ray_the_executor_is_refused_with_the_fix(tiny, tmp_path, monkeypatch):
    path = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    result = CliRunner().invoke(cli, ["batch", str(path), "--executor", "ray", "--classifier", str(tiny.classifier)])
    assert result.exit_code == 2 and "pip install 'moderator[ray]'" in result.output
    assert not (tmp_path / "posts.moderated").exists()


def copy_store(source: Path, target: Path) -> Path:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def stored(state: Path) -> dict[str, tuple]:
    """id -> (text hash, fingerprint, decision without the deciding run's id) of a state store."""
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT id, text_sha256, fingerprint, decision FROM decisions").fetchall()
    return {i: (h, f, {k: v for k, v in json.loads(d).items() if k != "run_id"}) for i, h, f, d in rows}


def test_an_incremental_ray_run_carries_over_what_a_local_run_would(tiny, hf_models, ray_cluster, tmp_path):
    """With a state store, the score actors set aside the posts an earlier run decided and the driver
    merges them back and stores the new decisions: the same output and store as a local run."""
    texts = [f"{POSTS[i % len(POSTS)]} #{i}" for i in range(40)]
    texts[3] = None
    ids = [f"p{i}" for i in range(40)]
    yesterday = write_parquet(tmp_path / "d1" / "posts.parquet", {"id": ids, "text": texts})
    today_texts = texts[:30] + [f"edited {t}" for t in texts[30:35]] + texts[35:] + ["a post new today"] * 3
    today = write_parquet(tmp_path / "d2" / "posts.parquet", {"id": ids + ["n1", "n2", "n3"], "text": today_texts})
    sections = {"input": {"batch_size": 8}, "output": {"rows_per_shard": 10},
                "policy": {"rewrite_threshold": 0.0, "remove_threshold": 1.0, "min_similarity": -1.0,
                           "max_rewrite_toxicity": 1.0}}
    state = tmp_path / "local.sqlite"
    first = run(tiny_config(tiny, **sections, state={"path": str(state)}), [str(yesterday)], tmp_path / "r1",
                models=hf_models)
    on_ray_state = copy_store(state, tmp_path / "ray.sqlite")
    local = run(tiny_config(tiny, **sections, state={"path": str(state)}), [str(today)], tmp_path / "local",
                models=hf_models)
    on_ray = run(tiny_config(tiny, **sections, state={"path": str(on_ray_state)}, runtime={"executor": "ray"}),
                 [str(today)], tmp_path / "ray")
    counts = local.manifest["counts"]
    assert counts["carried_over"] == 34 and counts["actions"]["rewrite"] == 42, counts  # 39 old texts, 5 edited
    assert_same(on_ray.path, local.path)
    audit = read_lines(on_ray.path / "audit.jsonl")
    assert {a["carried_from"] for a in audit if a["stage"] == "carried_over"} == {first.manifest["run_id"]}
    assert on_ray.manifest["state"]["fingerprint"] == local.manifest["state"]["fingerprint"]
    assert stored(on_ray_state) == stored(state) and len(stored(state)) == 42  # new decisions stored by the driver
    again = run(tiny_config(tiny, **sections, state={"path": str(on_ray_state)}, runtime={"executor": "ray"}),
                [str(today)], tmp_path / "again")
    assert again.manifest["counts"]["carried_over"] == 42  # today's Ray run is carried over in turn


def test_what_ray_cannot_do_is_refused_before_anything_is_written(tiny, tmp_path):
    with pytest.raises(ConfigError, match="standard input"):
        run(tiny_config(tiny, runtime={"executor": "ray"}), ["-"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_local_run_never_imports_ray(tiny, tmp_path):
    path = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    code = (f"import sys; from moderator.cli import main; sys.argv = ['moderate', 'batch', {str(path)!r}, "
            f"'--classifier', {str(tiny.classifier)!r}, '--no-rewrite', '-q']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'ray' not in sys.modules, 'a local run imported ray'\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
