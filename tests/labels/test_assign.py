"""labels.assign: the labels of one feature, shared by the features stage and ``label``."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from llmjp_ckpt.features import analyze
from llmjp_ckpt.labels import assign, granularity
from llmjp_ckpt.labels.examples import FeatureRecord
from tests.labels_builders import build_examples

TOKYO = build_examples([" Tokyo"] * 10)
KYOTO = build_examples(["京都"] * 10)


def test_label_feature_values() -> None:
    lab = assign.label_feature(TOKYO)
    labels = (lab["language_paper"], lab["language_script"], lab["granularity"])
    assert labels == ("en", "en", "token")
    assert 0.5 <= lab["granularity_confidence"] <= 1.0
    assert assign.label_feature(KYOTO)["language_script"] == "ja"


def test_label_feature_dead_and_without_granularity() -> None:
    assert assign.label_feature([]) == dict.fromkeys(assign.LABEL_COLUMNS)
    lab = assign.label_feature(TOKYO, granularity=False)
    assert lab["granularity"] is None and lab["granularity_confidence"] is None
    assert lab["language_paper"] == "en"


def test_label_records_language_column_follows_the_rule() -> None:
    recs = [FeatureRecord(examples=TOKYO, checkpoint=10, feature=3, language="en")]
    for rule in ("paper", "script"):
        (row,) = assign.label_records(recs, language_rule=rule)
        assert row["language"] == row[f"language_{rule}"] == "en"
        assert (row["checkpoint"], row["feature"], row["n_examples"]) == (10, 3, 10)
    with pytest.raises(ValueError, match="language rule"):
        assign.label_records(recs, language_rule="nope")
    (row,) = assign.label_records(recs, granularity=False)
    assert row["granularity"] == row["granularity_confidence"] == ""
    report = assign.agreement_report(assign.label_records(recs), "script")
    assert report is not None and "1/1 agree" in report
    bare = [FeatureRecord(checkpoint=None, feature=None, examples=TOKYO)]
    assert assign.agreement_report(assign.label_records(bare), "script") is None


class _Store:
    """The parts of a FeatureStore that ``feature_rows`` reads: latent 0 alive, 1 dead."""

    def __init__(self) -> None:
        self.d_sae = 2
        self.meta: dict = {}
        self.frequency = torch.tensor([0.5, 0.0])
        self.mean_activation = torch.tensor([1.0, 0.0])
        self.t = {"max_activation": torch.tensor([3.0, 0.0]), "top_windows": torch.tensor([[0], [-1]])}

    def examples(self, f: int, tt=None):
        return TOKYO if f == 0 else []

    def label_inputs(self, tt=None, n_examples: int = 50, features=None):
        from llmjp_ckpt.labels.batch import FlatFeatures

        return torch.tensor([0]), FlatFeatures.from_lists([TOKYO[:n_examples]])

    def _window_texts(self, tt=None):
        return [], None


def test_feature_rows_uses_the_shared_labels() -> None:
    alive, dead = analyze.feature_rows(_Store(), 10, "none", None)  # type: ignore[arg-type]
    assert {k: alive[k] for k in assign.LABEL_COLUMNS} == assign.label_feature(TOKYO)
    assert all(dead[k] is None for k in assign.LABEL_COLUMNS)


def test_a_failing_label_is_an_error_not_an_empty_label(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("granularity backend broke")

    monkeypatch.setattr(assign, "classify", broken)
    monkeypatch.setattr(granularity, "stats_from_max_tokens", broken)  # the batched path's
    with pytest.raises(RuntimeError, match="backend broke"):
        analyze.feature_rows(_Store(), 10, "none", None)  # type: ignore[arg-type]


def test_a_failing_label_import_is_an_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "llmjp_ckpt.labels.assign", None)  # import now fails
    spec = importlib.util.spec_from_file_location("analyze_copy", analyze.__file__)
    assert spec is not None and spec.loader is not None
    with pytest.raises(ImportError):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
