"""Self-training: the pool of texts (dev texts held out), candidate generation (deterministic,
resumable), the strict filter and its preference pairs, and training on the kept pairs with
checkpoints that resume to the same weights."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import SHARED_DATA, read_lines
from safetensors.torch import load_file

from moderator import prompts
from moderator.engines import HFEngine
from train import bundle, data, detox, loop, selftrain, selftrain_filter
from train.__main__ import cli

ROOT = Path(__file__).resolve().parents[1]


def _first(template: str, wanted) -> str:  # type: ignore[no-untyped-def]
    """The first of template.format(i) for which wanted(text) holds (to build texts in a given split)."""
    return next(t for t in (template.format(i) for i in range(10_000)) if wanted(t))


# Texts whose split is decided by their hash, found once.
PARADETOX_DEV = _first("you are a stupid fool number {}", lambda t: data.split_of(t) == "dev")
PARADETOX_TRAIN = [_first("shut up you annoying clown {}", lambda t: data.split_of(t) == "train"),
                   _first("this damn printer is garbage {}", lambda t: data.split_of(t) == "train")]
DEV_SENTENCE_TEMPLATE = "You are a clueless moron {}."
DEV_POST = _first("Thanks for the link. " + DEV_SENTENCE_TEMPLATE,
                  lambda t: selftrain.in_forum_dev(t) and data.split_of(t.split(". ", 1)[1]) == "train")
DEV_SENTENCE = DEV_POST.split(". ", 1)[1]
MARKED_POST = "The article is fine. You are a complete idiot, sir. What a dumb take on the budget."
REPEATS_DEV = "I read it twice. " + DEV_SENTENCE  # not a dev post, but it holds a dev post's sentence


def _write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder laid out like ../shared/data, with one case of every rule."""
    root = tmp_path_factory.mktemp("data")
    assert not selftrain.in_forum_dev(MARKED_POST) and not selftrain.in_forum_dev(REPEATS_DEV)
    idiot = MARKED_POST.index("idiot")
    _write_csv(root / "forum_posts" / "tsd_train.csv", ["spans", "text"], [
        [json.dumps(list(range(idiot, idiot + 5))), MARKED_POST],
        [json.dumps(list(range(len(DEV_POST)))), DEV_POST],
        ["[]", REPEATS_DEV],
    ])
    _write_csv(root / "forum_posts" / "tsd_trial.csv", ["spans", "text"], [])
    _write_csv(root / "paradetox" / "paradetox.tsv", ["toxic", "neutral1", "neutral2", "neutral3"], [
        [PARADETOX_TRAIN[0], "please be quiet", "", ""],
        [PARADETOX_TRAIN[1], "this printer does not work", "", ""],
        [PARADETOX_DEV, "you are wrong", "", ""],
    ], delimiter="\t")
    _write_csv(root / "toxicity" / "jigsaw_sentences.csv", ["text", "toxic", "split", "source_file"], [
        [_first("this is a stupid idea {} .", lambda t: data.split_of(t) == "train"), "1", "dev", "dev_toxic"],
        [PARADETOX_DEV.upper() + " !", "1", "dev", "dev_toxic"],  # ParaDetox dev, spelled differently
        [DEV_SENTENCE.lower(), "1", "test", "test_toxic"],  # a forum dev sentence
        ["the meeting is moved to thursday afternoon", "0", "dev", "dev_normal"],
        [PARADETOX_TRAIN[0] + " .", "1", "dev", "dev_toxic"],  # already a ParaDetox text
        ["stupid idea", "1", "dev", "dev_toxic"],  # too short
    ])
    tweet = _first("!!! RT @someone: you are a dumb &amp; lazy bum {} http://t.co/xyz",
                   lambda t: data.split_of(selftrain.clean_tweet(t)) == "train")
    _write_csv(root / "toxicity" / "davidson2017_tweets.csv",
               ["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"],
               [[0, 3, 0, 3, 0, 1, tweet], [1, 3, 0, 0, 3, 2, "what a lovely day for a walk outside"]])
    return root


def stub_scorer(texts: list[str]) -> list[float]:
    """Stands in for the classifier on unmarked forum sentences (the pool rules are under test here)."""
    return [0.9 if "dumb" in t or "moron" in t else 0.01 for t in texts]


def test_pool_holds_out_dev_texts_dedups_and_mixes_reproducibly(small_data):
    pool = selftrain.build_pool(small_data, selftrain.PoolOptions(), stub_scorer)
    by_source = {(t.source, t.text) for t in pool.texts}
    jigsaw = next(t.text for t in pool.texts if t.source == "jigsaw")
    davidson = next(t.text for t in pool.texts if t.source == "davidson")
    assert by_source == {
        ("forum", "You are a complete idiot, sir."),  # overlaps the marked span
        ("forum", "What a dumb take on the budget."),  # unmarked, but the classifier finds it toxic
        ("paradetox", PARADETOX_TRAIN[0]), ("paradetox", PARADETOX_TRAIN[1]),
        ("jigsaw", jigsaw), ("davidson", davidson),
    }
    assert jigsaw.startswith("this is a stupid idea")
    assert davidson.startswith("you are a dumb & lazy bum") and "@" not in davidson and "http" not in davidson
    marked = next(t for t in pool.texts if t.text.startswith("You are a complete idiot"))
    assert marked.insults == ("idiot",)
    texts = {data.normalize(t.text) for t in pool.texts}
    for evaluated in (PARADETOX_DEV, DEV_SENTENCE, DEV_POST, "Thanks for the link."):
        assert data.normalize(evaluated) not in texts  # the ParaDetox dev split and every sentence of a dev post
    assert pool.counts["jigsaw"] == {"found": 5, "eligible": 1, "held_out": 2, "duplicate": 1, "length": 1}
    assert pool.counts["forum"]["held_out"] == 1  # the dev sentence repeated in a non-dev post
    # The order is a function of the seed; --max-texts takes a prefix of it.
    again = selftrain.build_pool(small_data, selftrain.PoolOptions(), stub_scorer).texts
    other = selftrain.build_pool(small_data, selftrain.PoolOptions(seed=1), stub_scorer).texts
    assert again == pool.texts and other != pool.texts and set(other) == set(pool.texts)
    only_forum = selftrain.build_pool(small_data, selftrain.PoolOptions(mix="forum=1"), stub_scorer).texts
    assert {t.source for t in only_forum} == {"forum"}
    with pytest.raises(ValueError, match="unknown source"):
        selftrain.PoolOptions(mix="reddit=1")


def test_forum_dev_rule_is_the_benchmarks(small_data):
    spec = importlib.util.spec_from_file_location("forum_posts_bench", ROOT / "benchmarks" / "forum_posts.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    posts = [DEV_POST, MARKED_POST, REPEATS_DEV] + [f"post number {i}" for i in range(50)]
    assert [selftrain.in_forum_dev(p) for p in posts] == [bench.in_dev(p) for p in posts]
    assert [p["text"] for p in bench.dev_posts(small_data)] == [DEV_POST]


def _generation(tiny, **kw) -> selftrain.GenerationOptions:  # type: ignore[no-untyped-def]
    return selftrain.GenerationOptions(**{"candidates": 3, "temperature": 1.0, "max_new_tokens": 8, "chunk_size": 2,
                                          "base": str(tiny.decoder), "adapter": str(tiny.adapter), "engine": "hf",
                                          **kw})


def test_candidates_are_reproducible_use_the_product_prompt_and_resume_exactly(tiny, small_data, tmp_path,
                                                                                 monkeypatch):
    options, generation = selftrain.PoolOptions(), _generation(tiny)
    calls: list[list[str]] = []
    original = HFEngine.candidates

    def spy(self, prompts_, n, temperature, seed):  # type: ignore[no-untyped-def]
        calls.append(list(prompts_))
        return original(self, prompts_, n, temperature, seed)

    monkeypatch.setattr(HFEngine, "candidates", spy)
    straight = tmp_path / "straight" / "candidates.jsonl"
    stats = selftrain.run(small_data, straight, options, generation, make_scorer=lambda: stub_scorer)
    rows = read_lines(straight)
    pool = selftrain.read_pool(straight.with_suffix(".pool.jsonl"))
    assert [r["text"] for r in rows] == [t.text for t in pool] and len(rows) == 6
    assert all(1 <= len(r["candidates"]) <= 3 for r in rows) and any(len(r["candidates"]) > 1 for r in rows)
    assert [p for call in calls for p in call] == [prompts.build_prompt(t.text) for t in pool]  # the product's prompt
    assert next(r for r in rows if r["text"].startswith("You are a complete idiot"))["insults"] == ["idiot"]
    assert stats["sampled"] == {"texts": 6, "per_source": selftrain.sample_counts(pool)}
    assert stats["runs"][-1]["written"] == 6 and stats["models"]["adapter"]["sha256"]

    again = tmp_path / "again" / "candidates.jsonl"
    selftrain.run(small_data, again, options, generation, make_scorer=lambda: stub_scorer)
    assert again.read_bytes() == straight.read_bytes()

    # Cut off during the second chunk, with half a line written: resume gives the same file.
    cut = tmp_path / "cut" / "candidates.jsonl"

    def dies_on_second_chunk(self, prompts_, n, temperature, seed):  # type: ignore[no-untyped-def]
        if len(calls) == 1:
            with open(cut, "a") as handle:
                handle.write('{"source": "forum", "te')
            raise KeyboardInterrupt
        return spy(self, prompts_, n, temperature, seed)

    calls.clear()
    monkeypatch.setattr(HFEngine, "candidates", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        selftrain.run(small_data, cut, options, generation, make_scorer=lambda: stub_scorer)
    assert len(cut.read_text().splitlines()) == 3  # the first chunk's 2 lines, and half a line
    monkeypatch.setattr(HFEngine, "candidates", spy)
    with pytest.raises(ValueError, match="--resume"):
        selftrain.run(small_data, cut, options, generation, make_scorer=lambda: stub_scorer)
    with pytest.raises(ValueError, match="seed"):
        selftrain.run(small_data, cut, selftrain.PoolOptions(seed=1), generation, resume=True)
    resumed = selftrain.run(small_data, cut, options, generation, resume=True,
                            make_scorer=lambda: pytest.fail("a resumed run reads its pool back"))
    assert cut.read_bytes() == straight.read_bytes()
    assert resumed["runs"][-1] | {"seconds": 0, "texts_per_s": 0, "finished": ""} == {
        "written": 4, "too_long": 0, "seconds": 0, "texts_per_s": 0, "complete": True, "resumed": True,
        "finished": ""}
    assert resumed["texts_in_file"] == 6 and resumed["in_file_per_source"] == selftrain.sample_counts(pool)

    # Out of time after the first chunk: a prefix of the straight run, which --resume completes.
    early = tmp_path / "early" / "candidates.jsonl"
    stopped = selftrain.run(small_data, early, options, generation, max_seconds=1e-9, make_scorer=lambda: stub_scorer)
    assert not stopped["runs"][-1]["complete"] and stopped["texts_in_file"] == 2
    assert straight.read_text().startswith(early.read_text())
    selftrain.run(small_data, early, options, generation, resume=True)
    assert early.read_bytes() == straight.read_bytes()


def test_candidates_command(tiny, small_data, tmp_path):
    out = tmp_path / "c.jsonl"
    args = ["selftrain-candidates", "--out", str(out), "--data", str(small_data), "--max-texts", "3",
            "--candidates", "2", "--max-new-tokens", "6", "--engine", "hf", "--base", str(tiny.decoder),
            "--adapter", str(tiny.adapter), "--classifier", str(tiny.classifier)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert len(read_lines(out)) == 3 and json.loads(out.with_suffix(".stats.json").read_text())["max_texts"] == 3
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "--resume" in again.output and "Traceback" not in again.output
    more = CliRunner().invoke(cli, [*args[:6], "5", *args[7:], "--resume"])  # a larger --max-texts extends the run
    assert more.exit_code == 0, more.output
    assert len(read_lines(out)) == 5


# --- the filter: the product's real classifier and embedder ----------------------------------------------

SOURCE = "Your stupid code is broken again, you moron."
GOOD = "Your code is broken again."


@pytest.fixture(scope="module")
def scorer() -> selftrain_filter.ProductScorer:
    return selftrain_filter.ProductScorer(threads=1)


def test_filter_keeps_the_good_rewrite_and_says_why_the_others_fail(scorer, tmp_path):
    candidates = tmp_path / "candidates.jsonl"
    drift = ("The weather in Paris is lovely in spring and the museums stay open late on Fridays, "
             "so plan a long weekend.")
    records = [
        {"source": "jigsaw", "text": SOURCE, "candidates": [
            "your stupid code is BROKEN again you moron",  # a copy (case and punctuation aside)
            "",
            drift,
            GOOD,
            "Your code is broken again, you moron.",  # still toxic
            "Broken.",  # too little of it kept
        ]},
        {"source": "forum", "text": "Shut the hell up, nobody cares about your dumb opinion on taxes.",
         "insults": ["dumb"], "candidates": [
             "Nobody cares about your opinion on taxes.",  # passes everything but the length ratio
             "Please stop, nobody cares about your opinion on taxes.",
             "Please stop, nobody cares about your dumb opinion on taxes.",  # keeps the marked insult
         ]},
        {"source": "forum", "text": "the meeting is moved to thursday afternoon",  # the classifier: not toxic
         "candidates": ["the meeting moved to thursday"]},
        {"source": "davidson", "text": "you are a dumb lazy bum", "candidates": []},
    ]
    candidates.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"source": "forum", "tex')
    sampler = {"ref": "runs/detox-sft", "path": "/x/runs/detox-sft", "sha256": "ab" * 32}
    candidates.with_suffix(".stats.json").write_text(json.dumps({"models": {"base": {"ref": "pip:b"}, "adapter": sampler}}))
    out, preferences = tmp_path / "kept.jsonl", tmp_path / "preferences.jsonl"
    stats = selftrain_filter.run(candidates, out, scorer, preferences=preferences)
    # Which model sampled the candidates travels with the kept pairs and the preference pairs.
    assert stats["generated_by"] == {"base": {"ref": "pip:b"}, "adapter": sampler}
    assert json.loads(preferences.with_suffix(".stats.json").read_text())["generated_by"]["adapter"] == sampler

    kept = read_lines(out)
    assert [(k["toxic"], k["neutral"], k["candidate"]) for k in kept] == [
        (SOURCE, GOOD, 3), (records[1]["text"], "Please stop, nobody cares about your opinion on taxes.", 1)]
    assert all(k["toxicity"] < 0.1 and k["similarity"] >= 0.75 for k in kept)
    pairs = read_lines(preferences)
    assert {(p["prompt_text"], p["chosen"], p["rejected_why"]) for p in pairs} == {
        (SOURCE, GOOD, "copy"), (SOURCE, GOOD, "dissimilar"), (SOURCE, GOOD, "still_toxic"),
        (records[1]["text"], kept[1]["neutral"], "kept_insult")}  # empty and length failures make no pairs
    assert [p["rejected"] for p in pairs if p["rejected_why"] == "dissimilar"] == [drift, "Broken."]
    assert stats["rejected"] == {"copy": 1, "empty": 1, "dissimilar": 2, "still_toxic": 1, "length": 1,
                                 "kept_insult": 1, "source_not_toxic": 1, "no_candidates": 1}
    assert stats["per_source"]["forum"] | {"rejected": None} == {
        "texts": 2, "candidates": 4, "judged_texts": 1, "kept": 1, "greedy_passed": 0, "kept_share": 0.5,
        "kept_share_of_judged": 1.0, "greedy_pass_share": 0.0, "kept_is_greedy_share": 0.0, "rejected": None}
    assert stats["texts"] == 4 and stats["kept"] == 2 and stats["preferences"]["pairs"] == 5
    assert json.loads(out.with_suffix(".stats.json").read_text())["thresholds"]["max_toxicity"] == 0.1


def test_verdict_order_and_limits():
    limits = selftrain_filter.Thresholds()
    assert selftrain_filter.verdict("a b c", " ", 0.0, 1.0, [], limits) == "empty"
    assert selftrain_filter.verdict("You idiot!", "you IDIOT", 0.0, 1.0, [], limits) == "copy"
    assert selftrain_filter.verdict("You idiot, go", "you Idiot.", 0.0, 1.0, ["idiot"], limits) == "kept_insult"
    assert selftrain_filter.verdict("You idiot, go", "you idiotic", 0.0, 1.0, ["idiot"], limits) is None  # whole words
    assert selftrain_filter.verdict("a b c d e", "a b c d", 0.1, 0.9, [], limits) == "still_toxic"
    assert selftrain_filter.verdict("a b c d e", "a b c d", 0.09, 0.74, [], limits) == "dissimilar"
    assert selftrain_filter.verdict("a b c d e", "a b", 0.0, 0.9, [], limits) == "length"
    assert selftrain_filter.verdict("a b c d e", "a b c", 0.0, 0.9, [], limits) is None
    with pytest.raises(ValueError):
        selftrain_filter.Thresholds(min_length_ratio=2.0, max_length_ratio=1.0)


def test_filter_command_refuses_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "y", "candidates": []}\n{"text": "x"}\n{"text": "z", "candidates": []}\n')
    out, missing = tmp_path / "k.jsonl", str(tmp_path / "missing")
    result = CliRunner().invoke(cli, ["selftrain-filter", str(bad), "--out", str(out), "--classifier", missing])
    assert result.exit_code == 1 and result.output.strip() == f"Error: {bad}:2: not a candidates line " \
        '({"text", "candidates": [...]})'  # the whole file is read before the models load
    bad.write_text('{"text": "y", "candidates": ["z"]}\n')
    result = CliRunner().invoke(cli, ["selftrain-filter", str(bad), "--out", str(out), "--classifier", missing])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
    assert not out.exists()


# --- training on the kept pairs, and resuming ------------------------------------------------------------

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


@needs_data
def test_training_adds_the_extra_pairs_and_drops_dev_ones(tiny, tmp_path):
    paradetox = data.paradetox_pairs(SHARED_DATA)
    dev = next(p for p in paradetox if p.split == "dev")
    train = next(p for p in paradetox if p.split == "train")
    fresh = [(_first("you worthless troll number {}", lambda t: data.split_of(t) == "train"), "you are wrong"),
             (_first("stop whining you baby {}", lambda t: data.split_of(t) == "train"), "please stop complaining")]
    kept = tmp_path / "kept.jsonl"
    lines = [{"toxic": a, "neutral": b, "source": "forum"} for a, b in fresh]
    lines += [{"toxic": fresh[0][0].upper(), "neutral": fresh[0][1] + "!"},  # a repeat
              {"toxic": dev.toxic, "neutral": "x y"},  # ParaDetox dev: never trained on
              {"toxic": train.toxic, "neutral": train.neutral[0]}]  # already a ParaDetox pair
    kept.write_text("".join(json.dumps(x) + "\n" for x in lines))
    examples, counts = detox.training_examples(str(SHARED_DATA), 0, extra_pairs=kept)
    assert examples[-2:] == fresh and counts["extra_pairs"] == 2
    assert counts["extra_pairs_by"] is None  # no filter stats beside them
    sampler = {"ref": "runs/detox-dpo", "path": "/x", "sha256": "cd" * 32}
    kept.with_suffix(".stats.json").write_text(json.dumps({"generated_by": {"base": None, "adapter": sampler}}))
    assert selftrain_filter.sampled_by(kept) == sampler
    assert detox.training_examples(str(SHARED_DATA), 0, extra_pairs=kept)[1]["extra_pairs_by"] == sampler
    assert counts["extra_pairs_dropped"] == {"dev": 1, "blank": 0, "duplicate": 1, "already_in_paradetox": 1}

    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["detox", "--out", str(out), "--base", str(tiny.decoder), "--data",
                                      str(SHARED_DATA), "--max-steps", "2", "--max-pairs", "6", "--batch-size", "4",
                                      "--rank", "4", "--fp32", "--extra-pairs", str(kept), "--checkpoint-every", "1",
                                      "--note", "Self-training of the test."])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "train_stats.json").read_text())
    assert stats["note"] == "Self-training of the test." and "Self-training of the test." in bundle._sft_section(stats)
    # 6 sampled ParaDetox pairs; the extra pair that repeats a ParaDetox pair is new to this sample
    assert (stats["paradetox_pairs"], stats["extra_pairs"], stats["train_pairs"]) == (6, 3, 9)
    assert stats["extra_pairs_file"] == str(kept) and not (out / "checkpoint").exists()
    assert stats["extra_pairs_by"] == sampler
    # the card names the adapter that sampled the self-training pairs
    section = bundle._sft_section(stats)
    assert f"Self-training added 3 pairs of its own (`{kept}`: rewrites that `runs/detox-dpo` (sha256 cdcdcdcdcdcd) " \
           "sampled for toxic sentences it was not trained on" in section
    assert "an earlier adapter of this project sampled" in bundle._sft_section({**stats, "extra_pairs_by": None})


@needs_data
def test_resumed_training_ends_with_the_weights_of_a_straight_run(tiny, tmp_path, monkeypatch):
    args = {"method": "lora", "base": str(tiny.decoder), "max_steps": 6, "batch_size": 4, "rank": 4,
            "max_pairs": 24, "bf16": False}
    detox.train(str(SHARED_DATA), tmp_path / "straight", **args)

    saved = loop.save_checkpoint

    def save_then_die(*a, **kw):  # type: ignore[no-untyped-def]
        saved(*a, **kw)
        raise KeyboardInterrupt  # killed right after the step-3 checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        detox.train(str(SHARED_DATA), tmp_path / "cut", checkpoint_every=3, **args)
    monkeypatch.setattr(loop, "save_checkpoint", saved)
    assert json.loads((tmp_path / "cut" / "checkpoint" / "checkpoint.json").read_text())["step"] == 3
    with pytest.raises(ValueError, match="--resume"):
        detox.train(str(SHARED_DATA), tmp_path / "cut", checkpoint_every=3, **args)
    with pytest.raises(ValueError, match="different run"):
        detox.train(str(SHARED_DATA), tmp_path / "cut", checkpoint_every=3, resume=True, **{**args, "lr": 1e-3})
    resumed = detox.train(str(SHARED_DATA), tmp_path / "cut", checkpoint_every=3, resume=True, **args)
    assert resumed.info["stats"]["resumed_at_step"] == 3 and resumed.info["steps"] == 6
    assert not (tmp_path / "cut" / "checkpoint").exists()
    straight = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    cut = load_file(tmp_path / "cut" / "adapter_model.safetensors")
    assert straight.keys() == cut.keys()
    for name in straight:
        assert torch.allclose(straight[name], cut[name], atol=1e-6, rtol=0), name
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in straight.items() if "lora_B" in k)  # it trained


def test_with_human_rewrites_the_kept_candidate_is_the_one_closest_to_what_people_wrote(scorer, tmp_path):
    """Two candidates pass the strict check; people wrote the light edit. Against their rewrites the
    light edit is kept and preferred over the other (unlike_people); without them the product's
    (1 - toxicity) x similarity picks, and no such pair is made."""
    from train import data

    light, stock = GOOD, "Your not good code is broken again, you not smart person."
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text(json.dumps({"source": "paradetox", "text": SOURCE, "candidates": [stock, light]}) + "\n")
    judged = selftrain_filter.judge([json.loads(candidates.read_text())], scorer, selftrain_filter.Thresholds())[0]
    assert judged.why == [None, None] and judged.chrf is None  # both pass; no references given
    people = {data.normalize(SOURCE): ("your code is broken again .", "the code is broken again")}
    out, preferences = tmp_path / "kept.jsonl", tmp_path / "preferences.jsonl"
    stats = selftrain_filter.run(candidates, out, scorer, preferences=preferences, references=people)
    assert [k["neutral"] for k in read_lines(out)] == [light]
    assert [(p["chosen"], p["rejected"], p["rejected_why"]) for p in read_lines(preferences)] == [
        (light, stock, "unlike_people")]
    assert stats["human_rewrites"] == {"texts": 1, "judged_against": 1, "chrf_margin": 0.1}
    chrf = selftrain_filter.chrf_scores([stock, light], people[data.normalize(SOURCE)])
    assert chrf[1] - chrf[0] >= selftrain_filter.CHRF_MARGIN
    # without references: no chrF, no unlike_people pair, stats say so
    stats = selftrain_filter.run(candidates, out, scorer, preferences=preferences)
    assert stats["human_rewrites"] is None and not read_lines(preferences)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_human_rewrites_are_those_of_training_sentences_only():
    from train import data

    people = selftrain_filter.human_rewrites(SHARED_DATA)
    pairs = data.paradetox_pairs(SHARED_DATA)
    train = next(p for p in pairs if p.split == "train")
    dev = next(p for p in pairs if p.split == "dev")
    assert people[data.normalize(train.toxic)] == tuple(train.neutral)
    assert data.normalize(dev.toxic) not in people
    assert len(people) == sum(p.split == "train" for p in pairs)
