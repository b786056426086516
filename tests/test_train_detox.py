"""Training the detox rewriter: tiny models, real ParaDetox pairs, the shared prompt template."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SHARED_DATA
from safetensors.torch import load_file

import tiny_models
from moderator import prompts
from moderator.config import RewriterConfig, RuntimeConfig
from moderator.rewrite import Rewriter
from train import detox

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def test_examples_use_the_inference_prompt_and_label_only_the_rewrite(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.decoder)
    ids, labels = detox.encode_decoder_example(tokenizer, "you   idiot\nRewrite: x", "you are wrong", 192)
    prompt_ids = tokenizer(prompts.build_prompt("you   idiot\nRewrite: x"))["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids  # exactly what the engines are given at inference
    assert labels[: len(prompt_ids)] == [detox.IGNORE] * len(prompt_ids)
    assert labels[len(prompt_ids):] == ids[len(prompt_ids):] and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[len(prompt_ids):-1]) == " you are wrong"


def test_completion_loss_equals_the_full_logits_loss(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.decoder)
    model = AutoModelForCausalLM.from_pretrained(tiny.decoder)
    examples = [detox.encode_decoder_example(tokenizer, p, r, 192) for p, r in
                [("shut up loser", "please stop"), ("what a pathetic idea", "i disagree with the idea")]]
    width = max(len(ids) for ids, _ in examples)
    pad = tokenizer.pad_token_id
    batch = {
        "input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in examples]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in examples]),
        "labels": torch.tensor([lab + [detox.IGNORE] * (width - len(lab)) for _, lab in examples]),
    }
    expected = model(**batch).loss
    assert detox.completion_loss(model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
def test_lora_changes_the_adapter_only_and_full_changes_the_base(tiny, tmp_path):
    base = load_file(tiny.decoder / "model.safetensors")
    lora = detox.train(str(SHARED_DATA), tmp_path / "lora", method="lora", base=str(tiny.decoder), max_steps=4,
                       batch_size=4, rank=8).model
    assert all(p.abs().sum() > 0 for n, p in lora.named_parameters() if "lora_B" in n)
    for name, param in lora.named_parameters():
        if "base_layer" in name:
            key = name.split("base_model.model.", 1)[1].replace(".base_layer", "")
            assert torch.equal(param.detach(), base[key]), name
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny.decoder)
    adapted = {name.rsplit(".", 1)[-1] for name in config["target_modules"]}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # not lm_head
    attention = detox.train(str(SHARED_DATA), tmp_path / "attention", method="lora", base=str(tiny.decoder),
                            max_steps=1, batch_size=4, rank=8, lora_scope="attention")
    assert {name.rsplit(".", 1)[-1] for name in json.loads((tmp_path / "attention" / "adapter_config.json")
                                                           .read_text())["target_modules"]} == {
        "q_proj", "k_proj", "v_proj", "o_proj"}
    assert attention.info["lora_scope"] == "attention"
    full = detox.train(str(SHARED_DATA), tmp_path / "full", method="full", base=str(tiny.decoder), max_steps=2,
                       batch_size=4).model
    assert not torch.equal(full.model.layers[0].self_attn.q_proj.weight.detach(),
                           base["model.layers.0.self_attn.q_proj.weight"])
    stats = json.loads((tmp_path / "full" / "train_stats.json").read_text())
    assert stats["steps"] == 2 and stats["stats"]["trainable_params"] == stats["stats"]["total_params"]
    # Both folders serve through the rewriter: the adapter on its base, the full model as a base.
    for config in (RewriterConfig(adapter=str(tmp_path / "lora"), engine="hf", max_new_tokens=6),
                   RewriterConfig(base=str(tmp_path / "full"), engine="hf", max_new_tokens=6)):
        assert len(Rewriter(config, RuntimeConfig()).rewrite(["you are an idiot"])) == 1


@pytest.mark.slow
def test_encoder_decoder_bases_train_and_rewrite(tmp_path):
    t5 = tiny_models.build_t5_seq2seq(tmp_path / "t5")
    base = load_file(t5 / "model.safetensors")
    model = detox.train(str(SHARED_DATA), tmp_path / "t5-lora", method="lora", base=str(t5), max_steps=3,
                        batch_size=4, rank=8).model
    assert json.loads((tmp_path / "t5-lora" / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    assert torch.equal(model.get_base_model().encoder.block[0].layer[0].SelfAttention.q.base_layer.weight.detach(),
                       base["encoder.block.0.layer.0.SelfAttention.q.weight"])
    rewriter = Rewriter(RewriterConfig(adapter=str(tmp_path / "t5-lora"), engine="auto", max_new_tokens=6),
                        RuntimeConfig())
    assert rewriter.engine.name == "hf"  # auto picks transformers for encoder-decoder bases
    prompt = prompts.build_prompt("you are an idiot")
    [out] = rewriter.engine.generate([prompt])
    # The engine returns what the model generates, minus the decoder start and end tokens.
    encoded = rewriter.engine.tokenizer([prompt], return_tensors="pt")
    direct = rewriter.engine.model.generate(**encoded, max_new_tokens=6, do_sample=False)[0].tolist()[1:]
    eos, pad = rewriter.engine.tokenizer.eos_token_id, rewriter.engine.tokenizer.pad_token_id
    expected = [t for t in (direct[: direct.index(eos)] if eos in direct else direct) if t != pad]
    assert list(out.token_ids) == expected and expected


def test_evaluation_metrics_on_known_pairs(tiny):
    from train import detox_eval

    scorer = detox_eval.Scorer(str(tiny.classifier))
    inputs = ["you are a total idiot", "this plan is stupid"]
    references = [("you are wrong",), ("this plan is not good", "this plan is bad")]
    perfect = scorer.sentences(inputs, ["you are wrong", "this plan is bad"], references)
    assert perfect["chrF"] == pytest.approx([1.0, 1.0])
    copied = scorer.sentences(inputs, inputs, references)
    assert copied["SIM"] == pytest.approx([1.0, 1.0], abs=1e-5) and (copied["chrF"] < 0.8).all()
    empty = scorer.sentences(inputs, ["", "  "], references)
    assert (empty["SIM"] == 0).all() and (empty["chrF"] == 0).all() and (empty["J"] == 0).all()
    tox = scorer.toxicity(["you are wrong", "this plan is bad"])
    assert perfect["STA"] == pytest.approx(1 - tox)
    summary = scorer.score(inputs, ["you are wrong", "this plan is bad"], references)
    assert summary["J"] == pytest.approx(float((perfect["STA"] * perfect["SIM"] * perfect["chrF"]).mean()), abs=1e-4)

    # The independent view: alt-profanity-check as the toxicity judge, the same SIM and chrF
    profane = scorer.sentences(["you are a fucking idiot"], ["you are a fucking idiot"], [("you are wrong",)])
    assert profane["STA*"][0] < 0.2 and profane["J*"][0] == pytest.approx(
        profane["STA*"][0] * profane["SIM"][0] * profane["chrF"][0])
    assert perfect["STA*"].min() > 0.5 and (empty["J*"] == 0).all()  # emptying the post loses on this judge too
    assert {"STA*", "J*"} <= summary.keys()


def test_delete_baseline_drops_the_blamed_word(tiny):
    from train import detox_eval

    scorer = detox_eval.Scorer(str(tiny.classifier))
    texts = ["you are a complete idiot", "fine"]
    out = detox_eval.delete_baseline(scorer, texts, threshold=0.0)  # everything counts as toxic here
    assert out[1] == "fine"  # single words are left alone
    assert len(out[0].split()) == 2  # three rounds, one word each
    assert set(out[0].split()) <= set(texts[0].split())
