import numpy as np
import pyarrow as pa
import pytest
from conftest import POSTS, record_shapes

from moderator import records
from moderator.classify import Classifier, most_toxic
from moderator.config import ClassifierConfig, RuntimeConfig
from moderator.errors import ConfigError, ModelError


@pytest.fixture(scope="module")
def classifier(tiny):
    return Classifier(ClassifierConfig(model=str(tiny.classifier), batch_size=2), RuntimeConfig())


def test_most_toxic_row_per_text_first_on_a_tie():
    # rows owned by texts 0, 1, 0, 2, 1, 0: text 0 rows 0, 2, 5; text 1 rows 1, 4; text 2 row 3
    owner = np.array([0, 1, 0, 2, 1, 0])
    toxicity = np.array([0.2, 0.9, 0.7, 0.1, 0.9, 0.7])
    assert most_toxic(toxicity, owner, 3).tolist() == [2, 1, 3]


def test_labels_and_toxic_label_inference(classifier):
    assert classifier.labels == ["neutral", "toxic"]
    assert classifier.toxic_index == [1] and not classifier.multi_label


def test_probabilities_do_not_depend_on_batching_or_padding(classifier):
    texts = POSTS + ["short", "a much longer post " * 20]
    together = classifier.predict(texts)
    alone = np.concatenate([classifier.predict([t]) for t in texts])
    assert together.shape == (len(texts), 2)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(together.sum(axis=1), 1.0, atol=1e-5)  # softmax


def test_token_budget_changes_batching_not_probabilities(tiny, classifier):
    texts = POSTS + ["short", "a much longer post " * 20, "ok"]
    budgeted = Classifier(ClassifierConfig(model=str(tiny.classifier), batch_size=64, max_batch_tokens=16),
                          RuntimeConfig())
    np.testing.assert_allclose(budgeted.predict(texts), classifier.predict(texts), atol=1e-5)


def test_the_model_sees_padded_shapes_only(tiny, monkeypatch):
    from moderator.batching import LENGTH_STEP, ROW_STEP

    clf = Classifier(ClassifierConfig(model=str(tiny.classifier), batch_size=16, max_batch_tokens=256), RuntimeConfig())
    shapes = record_shapes(monkeypatch, clf.model)
    texts = [" ".join(["word"] * n) for n in (1, 2, 3, 5, 9, 17, 30, 31, 40)] * 3
    probs = clf.predict(texts)
    assert shapes and all(rows % ROW_STEP == 0 and length % LENGTH_STEP == 0 for rows, length in shapes)
    alone = np.concatenate([clf.predict([t]) for t in texts])
    np.testing.assert_allclose(probs, alone, atol=1e-5)  # filler rows and padding change nothing


def test_step_adds_scores_and_skips_quarantined_rows(classifier):
    batch = pa.RecordBatch.from_pydict({records.TEXT: ["hello", None, "you idiot"]})
    out = classifier(batch)
    toxicity = out.column(records.TOXICITY).to_pylist()
    scores = out.column(records.SCORES).to_pylist()
    assert toxicity[1] is None and scores[1] is None
    assert scores[0]["toxic"] == pytest.approx(toxicity[0]) and 0 <= toxicity[0] <= 1
    assert scores[2]["neutral"] + scores[2]["toxic"] == pytest.approx(1.0, abs=1e-5)


def test_multilabel_model_uses_sigmoid_and_max_over_toxic_labels(tiny):
    clf = Classifier(ClassifierConfig(model=str(tiny.multilabel)), RuntimeConfig())
    assert clf.multi_label and [clf.labels[i] for i in clf.toxic_index] == ["toxic", "insult", "threat"]
    probs = clf.predict(POSTS)
    np.testing.assert_allclose(clf.toxicity(probs), probs[:, :3].max(axis=1))
    only_threat = Classifier(ClassifierConfig(model=str(tiny.multilabel), toxic_labels=("threat",)), RuntimeConfig())
    np.testing.assert_allclose(only_threat.toxicity(probs), probs[:, 2])


def test_unknown_toxic_label_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match=r"toxic_labels \['rude'\] are not labels"):
        Classifier(ClassifierConfig(model=str(tiny.classifier), toxic_labels=("rude",)), RuntimeConfig())


def test_labels_that_say_nothing_need_toxic_labels(tiny, tmp_path):
    import tiny_models

    path = tiny_models.build_bert_classifier(tmp_path / "abc", labels=("a", "b", "c"))
    with pytest.raises(ConfigError, match="cannot tell which labels"):
        Classifier(ClassifierConfig(model=str(path)), RuntimeConfig())


def test_missing_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such folder"):
        Classifier(ClassifierConfig(model=str(tmp_path / "nothing")), RuntimeConfig())
    with pytest.raises(ModelError, match="fetching it from the model hub failed"):
        Classifier(ClassifierConfig(model="nobody/no-such-model"), RuntimeConfig())


def test_very_long_post_is_truncated_not_fatal(classifier):
    probs = classifier.predict(["word " * 200_000])
    assert probs.shape == (1, 2)


@pytest.mark.parametrize(("flags", "native"), [
    ("flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512_vnni", False),  # AVX-512 only: oneDNN emulates bf16
    ("flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512_bf16", True),
    ("flags\t\t: fpu avx512f amx_bf16 amx_tile", True),
    ("Features\t: fp asimd sve bf16 i8mm", True),  # Arm's BF16 extension
    ("Features\t: fp asimd", False),
])
def test_bfloat16_is_picked_on_cpus_with_native_bf16_only(tmp_path, monkeypatch, flags, native):
    """oneDNN also "supports" bf16 on plain AVX-512 by emulating it (2.4x slower than float32 there):
    the CPU's own flags decide what `dtype = "auto"` picks."""
    import torch

    from moderator import models

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{flags}\n\nprocessor\t: 1\n{flags}\n")
    assert models.cpu_has_bf16(cpuinfo) is native
    assert models.cpu_has_bf16(tmp_path / "missing") is False
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: native)
    assert models.pick_dtype("auto", "cpu", cpu_bf16=True) == (torch.bfloat16 if native else torch.float32)
    assert models.pick_dtype("auto", "cpu") == torch.float32

