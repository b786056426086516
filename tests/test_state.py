"""Incremental runs: the SQLite state store carries over posts already moderated under the same
policy and models, re-scores changed ones, and `--force` re-scores everything."""

import json
import sqlite3

import pytest
from click.testing import CliRunner
from conftest import POSTS, read_lines, read_output, tiny_config, write_parquet
from test_resume import Boom, assert_same_run, fail_on_call

from moderator.cli import cli
from moderator.pipeline import run


def posts(path, texts, ids=None):
    return write_parquet(path, {"id": ids or [f"p{i}" for i in range(len(texts))], "text": texts})


def config(tiny, state, **sections):
    policy = {"rewrite_threshold": 0.0, "remove_threshold": 1.0, **sections.pop("policy", {})}
    return tiny_config(tiny, state={"path": str(state)}, policy=policy, input={"batch_size": 4}, **sections)


def moderation(run_dir):
    return {m["id"]: m for m in read_output(run_dir).column("moderation").to_pylist()}


def test_second_run_carries_over_what_the_first_decided(tiny, hf_models, tmp_path, monkeypatch):
    state = tmp_path / "state.sqlite"
    texts = POSTS + [None]
    first = run(config(tiny, state), [str(posts(tmp_path / "d1.parquet", texts))], tmp_path / "r1", models=hf_models)
    assert first.manifest["counts"]["carried_over"] == 0
    assert first.manifest["state"]["path"] == str(state) and first.manifest["state"]["force"] is False
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*), min(run_id), max(run_id) FROM decisions").fetchone() == (
            6, first.manifest["run_id"], first.manifest["run_id"])  # the quarantined record is not stored

    seen = fail_on_call(monkeypatch, hf_models.classifier, 0)
    rewrites = fail_on_call(monkeypatch, hf_models.rewriter, 0)
    second = run(config(tiny, state), [str(posts(tmp_path / "d2.parquet", texts))], tmp_path / "r2", models=hf_models)
    assert seen == [1] and rewrites == [1]  # only the batch of the quarantined record, which has no text to score
    counts = second.manifest["counts"]
    assert counts["carried_over"] == 6 and counts["output_rows"] == 6 and counts["quarantined_rows"] == 1
    before, after = moderation(tmp_path / "r1"), moderation(tmp_path / "r2")
    for key, m in after.items():
        assert m["stage"] == "carried_over"
        assert {k: v for k, v in m.items() if k != "stage"} == {k: v for k, v in before[key].items() if k != "stage"}
    audit = read_lines(tmp_path / "r2" / "audit.jsonl")
    assert [a["stage"] for a in audit] == ["carried_over"] * 6 + [None]
    assert {a.get("carried_from") for a in audit[:6]} == {first.manifest["run_id"]}
    assert "carried_from" not in audit[6]
    assert CliRunner().invoke(cli, ["audit", "verify", str(tmp_path / "r2")]).exit_code == 0


def test_changed_texts_new_posts_policies_and_force_are_scored_again(tiny, hf_models, tmp_path, monkeypatch):
    state = tmp_path / "state.sqlite"
    run(config(tiny, state), [str(posts(tmp_path / "d1.parquet", POSTS))], tmp_path / "r1", models=hf_models)
    seen = fail_on_call(monkeypatch, hf_models.classifier, 0)

    changed = POSTS[:2] + ["an edited post that nobody has seen"] + POSTS[3:] + ["a brand new post"]
    result = run(config(tiny, state), [str(posts(tmp_path / "d2.parquet", changed))], tmp_path / "r2", models=hf_models)
    assert result.manifest["counts"]["carried_over"] == 5
    assert sum(seen) == 2  # only p2 (new text) and p6 (new id) went through the classifier
    stages = {k: m["stage"] for k, m in moderation(tmp_path / "r2").items()}
    assert stages["p2"] == stages["p6"] == "classifier" and stages["p0"] == "carried_over"

    seen.clear()  # a new threshold: a new fingerprint, so nothing is carried over
    stricter = config(tiny, state, policy={"min_similarity": -0.5})
    result = run(stricter, [str(posts(tmp_path / "d2.parquet", changed))], tmp_path / "r3", models=hf_models)
    assert result.manifest["counts"]["carried_over"] == 0 and sum(seen) == 7

    seen.clear()  # same settings again: carried over from r3
    result = run(stricter, [str(posts(tmp_path / "d2.parquet", changed))], tmp_path / "r4", models=hf_models)
    assert result.manifest["counts"]["carried_over"] == 7 and seen == []

    forced = run(stricter, [str(posts(tmp_path / "d2.parquet", changed))], tmp_path / "r5", force=True,
                 models=hf_models)
    assert forced.manifest["counts"]["carried_over"] == 0 and sum(seen) == 7 and forced.manifest["state"]["force"]
    with sqlite3.connect(state) as db:
        assert {r[0] for r in db.execute("SELECT run_id FROM decisions")} == {forced.manifest["run_id"]}


def test_a_run_never_carries_over_its_own_decisions(tiny, hf_models, tmp_path):
    """The same id twice in one input is scored twice, as without a store (and as after a resume)."""
    state = tmp_path / "state.sqlite"
    path = posts(tmp_path / "d.parquet", POSTS + POSTS, ids=[f"p{i}" for i in range(6)] * 2)
    result = run(config(tiny, state), [str(path)], tmp_path / "r", models=hf_models)
    assert result.manifest["counts"]["carried_over"] == 0 and result.manifest["counts"]["output_rows"] == 12


def test_an_incremental_run_resumes_to_the_uninterrupted_result(tiny, hf_models, tmp_path, monkeypatch):
    state = tmp_path / "state.sqlite"
    yesterday = [f"{t} (day 1, {i})" for i, t in enumerate(POSTS * 4)]
    today = yesterday[:10] + [f"{t} (day 2, {i})" for i, t in enumerate(POSTS * 3)]
    run(config(tiny, state), [str(posts(tmp_path / "d1.parquet", yesterday))], tmp_path / "r1", models=hf_models)
    backup = state.read_bytes()
    shards = {"output": {"rows_per_shard": 3}}
    path = str(posts(tmp_path / "d2.parquet", today))
    clean = run(config(tiny, state, **shards), [path], tmp_path / "clean", models=hf_models)
    assert clean.manifest["counts"]["carried_over"] == 10

    for suffix in ("-wal", "-shm"):
        state.with_name(state.name + suffix).unlink(missing_ok=True)
    state.write_bytes(backup)  # the store as it was before today's run
    with monkeypatch.context() as patch:
        fail_on_call(patch, hf_models.classifier, 4)
        with pytest.raises(Boom):
            run(config(tiny, state, **shards), [path], tmp_path / "resumed", models=hf_models)
    resumed = run(config(tiny, state, **shards), [path], tmp_path / "resumed", models=hf_models)
    assert resumed.manifest["resumed"] and resumed.manifest["counts"] == clean.manifest["counts"]
    assert_same_run(tmp_path / "resumed", tmp_path / "clean")


def test_state_and_force_from_the_command_line(tiny, tmp_path):
    path = posts(tmp_path / "d.parquet", POSTS)
    state = tmp_path / "state" / "moderator.sqlite"
    args = ["batch", str(path), "--classifier", str(tiny.classifier), "--no-rewrite", "--state", str(state)]
    first = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert state.is_file()
    again = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b")])
    assert again.exit_code == 0 and "carried over 6" in again.stderr
    forced = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c"), "--force"])
    assert forced.exit_code == 0
    counts = [json.loads((tmp_path / d / "manifest.json").read_text())["counts"]["carried_over"] for d in "abc"]
    assert counts == [0, 6, 0]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = CliRunner().invoke(cli, [*args[:-1], str(blocker / "s.sqlite"), "--out", str(tmp_path / "d")])
    assert bad.exit_code == 4 and "cannot open the state store" in bad.stderr and "Traceback" not in bad.output


def test_the_fingerprint_ignores_speed_settings_and_not_how_candidates_are_drawn():
    from moderator.config import JobConfig
    from moderator.state import fingerprint

    def of(**rewriter):  # type: ignore[no-untyped-def]
        return fingerprint(JobConfig.load(overrides={"rewriter": rewriter}), {"classifier": "abc"}, False)

    assert of(compile="on") == of(compile="off") == of(lora_serving="request") == of()
    assert of(sample_when="always") != of() and of(candidates=2) != of()
