import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import POSTS, read_lines, read_output, tiny_config, write_jsonl, write_parquet

from moderator import records
from moderator.errors import InputError, OutputError
from moderator.pipeline import run


@pytest.fixture
def corpus(tmp_path):
    texts = POSTS * 3 + [None, "", "   "]
    return write_parquet(tmp_path / "posts.parquet", {
        "id": [f"p{i}" for i in range(len(texts))],
        "text": texts,
        "forum": ["cooking"] * len(texts),
    })


def test_parquet_run_reconciles_and_annotates(tiny, hf_models, corpus):
    config = tiny_config(tiny, policy={"rewrite_threshold": 0.0, "remove_threshold": 1.0,
                                       "max_rewrite_toxicity": 1.0, "min_similarity": -1.0})
    result = run(config, [str(corpus)], models=hf_models)
    out = corpus.parent / "posts.moderated"
    assert result.path == out and not result.skipped
    assert sorted(p.name for p in out.iterdir()) == ["audit.jsonl", "manifest.json", "output", "quarantine.jsonl"]
    table = read_output(out)
    quarantine = read_lines(out / "quarantine.jsonl")
    audit = read_lines(out / "audit.jsonl")
    counts = result.manifest["counts"]
    assert counts["input_rows"] == 21 == table.num_rows + len(quarantine) == len(audit)
    assert counts["output_rows"] == 18 and counts["quarantined_rows"] == 3
    assert counts["quarantine_reasons"] == {"text_empty": 2, "text_null": 1}
    # Every input column kept, in order, plus one struct column.
    assert table.column_names == ["id", "text", "forum", "moderation"]
    moderation = table.column("moderation").to_pylist()
    assert {m["action"] for m in moderation} == {"rewrite"}  # every post routed to the rewriter and accepted
    for row, m in zip(table.column("text").to_pylist(), moderation):
        assert isinstance(m["rewrite"], str) and 0 <= m["toxicity"] <= 1 and m["scores"].keys() == {"neutral", "toxic"}
        assert -1 <= m["similarity"] <= 1 and 0 <= m["rewrite_toxicity"] <= 1
    # Audit: one line per input record, in input order, text hashed, never stored.
    assert [a["id"] for a in audit] == [f"p{i}" for i in range(21)]
    assert audit[0]["text_sha256"] == hashlib.sha256(POSTS[0].encode()).hexdigest()
    assert "text" not in audit[0] and POSTS[0] not in json.dumps(audit)
    assert audit[-1]["action"] == "quarantine" and audit[-1]["reason"] == "text_empty"
    assert audit[0]["models"] == {k: v["sha256"] for k, v in result.manifest["models"].items()}
    assert audit[0]["thresholds"]["rewrite_threshold"] == 0.0
    # Manifest: config, inputs with checksums, models with hashes, packages, timings.
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["policy"]["rewrite_threshold"] == 0.0
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert manifest["inputs"][0]["rows"] == 21
    assert set(manifest["models"]) == {"classifier", "rewriter_base", "adapter", "embedder"}
    assert manifest["packages"]["pyarrow"] == pa.__version__
    assert manifest["engine"] == "hf" and manifest["timings_s"]["classify"] >= 0


def test_actions_follow_thresholds_on_the_scores_written(tiny, hf_models, corpus):
    result = run(tiny_config(tiny), [str(corpus)], models=hf_models)
    scores = sorted(m["toxicity"] for m in read_output(result.path).column("moderation").to_pylist())
    low, high = scores[len(scores) // 3], scores[2 * len(scores) // 3]
    config = tiny_config(tiny, policy={"rewrite_threshold": low, "remove_threshold": high})
    result = run(config, [str(corpus)], corpus.parent / "thresholds", models=hf_models)
    for m in read_output(result.path).column("moderation").to_pylist():
        t = m["toxicity"]
        expected = "allow" if t < low else ("remove" if t >= high else None)
        if expected:
            assert m["action"] == expected and m["rewrite"] is None
        else:
            assert m["action"] in ("rewrite", "review") and m["reason"] in records.REASONS
    assert set(result.manifest["counts"]["actions"].values()) != {0}


def test_no_rewrite_needs_no_decoder(tiny, corpus):
    config = tiny_config(tiny, rewriter={"enabled": False, "base": "/nonexistent"},
                         policy={"rewrite_threshold": 0.0, "remove_threshold": 1.0})
    result = run(config, [str(corpus)], corpus.parent / "triage")
    moderation = read_output(result.path).column("moderation").to_pylist()
    assert {(m["action"], m["reason"]) for m in moderation} == {("review", "rewrite_disabled")}
    assert all(m["rewrite"] is None for m in moderation)
    assert result.manifest["engine"] is None and set(result.manifest["models"]) == {"classifier"}


def test_jsonl_in_jsonl_out_with_derived_ids_and_quarantine(tiny, hf_models, tmp_path):
    path = write_jsonl(tmp_path / "dump.jsonl.gz", [{"text": t, "n": i} for i, t in enumerate(POSTS)],
                       [b"oops\n", b'{"text": null}\n'])
    result = run(tiny_config(tiny), [str(path)], models=hf_models)
    assert result.path == tmp_path / "dump.moderated"
    [part] = sorted((result.path / "output").iterdir())
    assert part.name == "part-00000.jsonl"
    rows = read_lines(part)
    assert [r["n"] for r in rows] == list(range(len(POSTS)))
    assert [r["moderation"]["id"] for r in rows] == [f"dump.jsonl.gz:{i}" for i in range(len(POSTS))]
    quarantine = read_lines(result.path / "quarantine.jsonl")
    assert [(q["reason"], q["line"], q["raw"]) for q in quarantine] == [
        ("invalid_json", 7, "oops"), ("text_null", 8, '{"text": null}')]


def test_several_inputs_and_forced_format(tiny, hf_models, tmp_path):
    a = write_parquet(tmp_path / "in" / "a.parquet", {"text": POSTS[:3], "x": [1, 2, 3]})
    b = write_jsonl(tmp_path / "in" / "b.jsonl", [{"text": t, "y": "z"} for t in POSTS[3:]])
    config = tiny_config(tiny, output={"format": "parquet", "rows_per_shard": 2})
    result = run(config, [str(tmp_path / "in")], models=hf_models)
    assert result.path == tmp_path / "in.moderated"
    parts = result.manifest["output"]["parts"]
    assert sum(p["rows"] for p in parts) == 6 and all(p["rows"] <= 2 for p in parts)
    assert [i["name"] for i in result.manifest["inputs"]] == ["a.parquet", "b.jsonl"]
    table = read_output(result.path)
    assert table.column("text").to_pylist() == POSTS
    assert a.exists() and b.exists()


def test_rerun_leaves_finished_output_untouched_and_overwrite_replaces_it(tiny, hf_models, corpus):
    first = run(tiny_config(tiny), [str(corpus)], models=hf_models)
    audit = first.path / "audit.jsonl"
    before = audit.read_bytes()
    again = run(tiny_config(tiny), [str(corpus)], models=hf_models)
    assert again.skipped and again.manifest["run_id"] == first.manifest["run_id"]
    assert audit.read_bytes() == before
    replaced = run(tiny_config(tiny), [str(corpus)], overwrite=True, models=hf_models)
    assert not replaced.skipped and replaced.manifest["run_id"] != first.manifest["run_id"]


def test_a_finished_output_of_other_inputs_is_not_mistaken_for_this_one(tiny, hf_models, tmp_path):
    parquet = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    jsonl = write_jsonl(tmp_path / "posts.jsonl", [{"text": t} for t in POSTS])
    run(tiny_config(tiny), [str(parquet)], models=hf_models)
    with pytest.raises(OutputError, match="holds the finished output of other inputs"):
        run(tiny_config(tiny), [str(jsonl)], models=hf_models)


def test_failure_mid_run_leaves_no_finished_output(tiny, hf_models, tmp_path):
    good = write_parquet(tmp_path / "in" / "a.parquet", {"text": POSTS})
    bad = tmp_path / "in" / "b.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 not really gzip" * 50)
    out = tmp_path / "run"
    with pytest.raises(InputError, match="b.jsonl.gz"):
        run(tiny_config(tiny), [str(tmp_path / "in")], out, models=hf_models)
    assert not (out / "manifest.json").exists() and not (out / "output").exists()
    assert "InputError" in (out / ".partial" / "error.txt").read_text()
    # The next run starts clean and finishes.
    bad.unlink()
    result = run(tiny_config(tiny), [str(good)], out, models=hf_models)
    assert result.manifest["counts"]["input_rows"] == len(POSTS) and not (out / ".partial").exists()


def test_failed_overwrite_keeps_the_previous_finished_output(tiny, hf_models, corpus, tmp_path):
    out = tmp_path / "run"
    first = run(tiny_config(tiny), [str(corpus)], out, models=hf_models)
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 broken" * 20)
    with pytest.raises(InputError):
        run(tiny_config(tiny), [str(corrupt)], out, overwrite=True, models=hf_models)
    assert json.loads((out / "manifest.json").read_text())["run_id"] == first.manifest["run_id"]
    assert read_output(out).num_rows == first.manifest["counts"]["output_rows"]


def test_missing_text_column_stops_before_any_model_loads(tiny, tmp_path):
    good = write_parquet(tmp_path / "in" / "a.parquet", {"text": POSTS})
    bad = write_parquet(tmp_path / "in" / "b.parquet", {"body": POSTS})
    config = tiny_config(tiny, classifier={"model": "/models/that/do/not/exist"})
    with pytest.raises(InputError, match=r"b.parquet: no column 'text'"):
        run(config, [str(tmp_path / "in")], tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert good.exists()


def test_foreign_output_folder_is_refused(tiny, hf_models, corpus, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(OutputError, match="not a moderator output"):
        run(tiny_config(tiny), [str(corpus)], out, models=hf_models)
    assert (out / "thesis.docx").read_text() == "precious"


def test_memory_stays_bounded_by_batches(tiny, hf_models, tmp_path, monkeypatch):
    """The reader hands out batches of the configured size; output parts stream them out."""
    texts = [POSTS[i % len(POSTS)] for i in range(2000)]
    path = write_parquet(tmp_path / "big.parquet", {"text": texts})
    seen = []
    original = hf_models.classifier.__class__.__call__

    def spy(self, batch):
        seen.append(batch.num_rows)
        return original(self, batch)

    monkeypatch.setattr(hf_models.classifier.__class__, "__call__", spy)
    result = run(tiny_config(tiny, input={"batch_size": 128}, policy={"rewrite_threshold": 1.0, "remove_threshold": 1.0}), [str(path)],
                 models=hf_models)
    assert max(seen) == 128 and sum(seen) == 2000
    assert pq.ParquetFile(result.path / "output" / "part-00000.parquet").metadata.num_rows == 2000


# The local executor's stages: read, score, rewrite and write overlap in threads joined by bounded queues.

def test_staged_keeps_order_bounds_what_is_in_flight_and_stops_its_threads():
    import threading
    import time

    from moderator.executors.local import staged

    produced, consumed, in_flight = [], [], []

    def source():
        for i in range(60):
            produced.append(i)
            yield i

    def slow(x):
        time.sleep(0.001)
        return x + 1000

    before = threading.active_count()
    for depth in (0, 1, 3):
        produced.clear(), consumed.clear(), in_flight.clear()
        for item in staged(source(), [lambda x: x * 2, slow], depth):
            consumed.append(item)
            in_flight.append(len(produced) - len(consumed))
        assert consumed == [i * 2 + 1000 for i in range(60)]
        # each queue holds `depth` items, each thread one more, the caller one: never the whole input
        assert max(in_flight) <= 3 * depth + 3, (depth, max(in_flight))
    items = staged(source(), [slow], 2)
    assert [next(items) for _ in range(3)] == [1000, 1001, 1002]
    items.close()  # stopping early stops the threads
    assert threading.active_count() == before


def test_staged_raises_an_error_after_the_items_before_it():
    from moderator.executors.local import staged

    def source():
        yield from range(5)
        raise ValueError("cannot read")

    def stage(x):
        if x == 3:
            raise KeyError("model crashed")
        return x

    for depth in (0, 2):
        got = []
        with pytest.raises(KeyError):
            for item in staged(iter(range(10)), [lambda x: x, stage], depth):
                got.append(item)
        assert got == [0, 1, 2]
        got = []
        with pytest.raises(ValueError):
            for item in staged(source(), [lambda x: x], depth):
                got.append(item)
        assert got == [0, 1, 2, 3, 4]


def test_overlapped_and_sequential_runs_are_identical_with_and_without_carry_over(tiny, hf_models, tmp_path):
    texts = [f"{POSTS[i % len(POSTS)]} {i}" for i in range(70)]
    texts[9] = None
    path = write_parquet(tmp_path / "posts.parquet", {"id": [f"p{i}" for i in range(70)], "text": texts})
    results = {}
    for depth in (0, 2):
        config = tiny_config(tiny, runtime={"queue_depth": depth}, input={"batch_size": 8},
                             output={"rows_per_shard": 15}, state={"path": str(tmp_path / f"state{depth}.sqlite")},
                             policy={"rewrite_threshold": 0.3, "remove_threshold": 0.9, "min_similarity": -1.0})
        first = run(config, [str(path)], tmp_path / f"first{depth}", models=hf_models)
        again = run(config, [str(path)], tmp_path / f"again{depth}", models=hf_models)  # carried over
        assert again.manifest["counts"]["carried_over"] == 69
        results[depth] = [(read_output(r.path).to_pylist(), r.manifest["output"]["parts"], r.manifest["counts"],
                           [{k: v for k, v in line.items() if k not in ("run_id", "time", "prev_sha256", "carried_from")}
                            for line in read_lines(r.path / "audit.jsonl")]) for r in (first, again)]
    assert results[0] == results[2]


def test_only_the_rows_the_policy_flags_reach_the_engine(tiny, hf_models, corpus, monkeypatch):
    engine = hf_models.rewriter.engine
    prompts_seen = []
    original = type(engine).generate

    def spy(self, prompts):
        prompts_seen.extend(prompts)
        return original(self, prompts)

    monkeypatch.setattr(type(engine), "generate", spy)
    probe = run(tiny_config(tiny, rewriter={"enabled": False}), [str(corpus)], corpus.parent / "probe", models=hf_models)
    scores = sorted(m["toxicity"] for m in read_output(probe.path).column("moderation").to_pylist())
    config = tiny_config(tiny, policy={"rewrite_threshold": scores[len(scores) // 2], "remove_threshold": 1.0})
    result = run(config, [str(corpus)], corpus.parent / "flagged", models=hf_models)
    moderation = read_output(result.path).column("moderation").to_pylist()
    flagged = [m for m in moderation if m["toxicity"] >= scores[len(scores) // 2]]
    assert 0 < len(prompts_seen) == len(flagged) < len(moderation)
    assert all(m["rewrite"] is not None for m in flagged)
    assert all(m["rewrite"] is None for m in moderation if m not in flagged)


def test_on_a_cpu_the_classifier_and_the_engine_take_turns_in_the_callers_thread(tiny, hf_models, tmp_path,
                                                                                   monkeypatch):
    import threading
    import time

    from moderator.config import RuntimeConfig
    from moderator.executors.local import models_overlap

    assert not models_overlap(RuntimeConfig(device="cpu"))  # auto: overlap on GPUs only (none here)
    assert models_overlap(RuntimeConfig(device="cpu", overlap_models="on"))
    assert not models_overlap(RuntimeConfig(device="cuda", overlap_models="off"))

    busy, spans = set(), []
    lock = threading.Lock()

    def timed(name, original):
        def call(self, *args):
            with lock:
                spans.append((name, set(busy), threading.get_ident()))  # who else was computing, and where
                busy.add(name)
            time.sleep(0.02)  # give the other stage time to start if it may
            try:
                return original(self, *args)
            finally:
                with lock:
                    busy.discard(name)
        return call

    classifier, engine = type(hf_models.classifier), type(hf_models.rewriter.engine)
    monkeypatch.setattr(classifier, "__call__", timed("classify", classifier.__call__))
    monkeypatch.setattr(engine, "generate", timed("generate", engine.generate))
    texts = [f"{POSTS[i % len(POSTS)]} {i}" for i in range(64)]
    path = write_parquet(tmp_path / "posts.parquet", {"text": texts})
    overlaps, threads = {}, {}
    for overlap in ("auto", "on"):
        spans.clear()
        config = tiny_config(tiny, runtime={"overlap_models": overlap, "queue_depth": 2}, input={"batch_size": 4},
                             policy={"rewrite_threshold": 0.0, "remove_threshold": 1.0, "min_similarity": -1.0})
        run(config, [str(path)], tmp_path / overlap, models=hf_models)
        assert sum(name == "generate" for name, _, _ in spans) == 16  # every batch was rewritten
        overlaps[overlap] = sum(bool(others) for _, others, _ in spans)
        threads[overlap] = {thread for _, _, thread in spans}
    # The tests run on a CPU: never both at once, in the thread that loaded the models (this one).
    assert overlaps["auto"] == 0 and threads["auto"] == {threading.get_ident()}
    assert overlaps["on"] > 0 and threading.get_ident() not in threads["on"] and len(threads["on"]) == 2
