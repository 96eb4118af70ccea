"""The batched labeller against the per-feature functions; LOCO validation; ``label --fit``;
bootstrap share intervals; refit thresholds in the features config."""

from __future__ import annotations

import json
import random

import pytest

from llmjp_ckpt.cli import main
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.labels import dictionary
from llmjp_ckpt.labels.batch import label_features
from llmjp_ckpt.labels.evaluate import (
    GRID,
    loco,
    loco_confusion,
    loco_from_stats,
)
from llmjp_ckpt.labels.examples import FeatureRecord
from llmjp_ckpt.labels.granularity import (
    LABELS,
    RuleBackend,
    RuleParams,
    backend_from_params,
    decide,
    token_stats,
)
from llmjp_ckpt.labels.language import paper_language, script_language
from llmjp_ckpt.labels.uncertainty import load_confusion, share_intervals
from tests.labels_builders import PEER, build_examples, peer_records


def reference(examples, backend):
    """What the per-feature functions say (the features stage's old path)."""
    return (paper_language(examples), script_language(examples), *backend.classify(examples))


def as_tuple(lab):
    return (lab.language_paper, lab.language_script, lab.granularity, lab.confidence)


def random_features(n, seed=0):
    """Odd windows on purpose: empty ones, negative and float activations, ties, digits first."""
    rng = random.Random(seed)
    vocab = [" the", "の", "。", "1", "23", " Tokyo", "東京", "<0x0A>", " ", ")", " cat", "ネコ",
             " cats", "é", "-", "ダーク", " dark", "apped", " c"]
    feats = []
    for _ in range(n):
        ex = []
        for _ in range(rng.randint(0, 6)):
            width = rng.randint(0, 8)
            acts = [0, 0, 1, 2, 2.5, -1, 10, rng.random() * 3]
            ex.append([(rng.choice(vocab), rng.choice(acts)) for _ in range(width)])
        feats.append(ex)
    return feats


@pytest.mark.parametrize("use_dictionary", [True, False])
def test_batch_equals_per_feature_on_random_windows(use_dictionary):
    backend = RuleBackend(use_dictionary=use_dictionary)
    feats = random_features(300)
    want = [reference(e, backend) for e in feats]
    assert [as_tuple(x) for x in label_features(feats, backend, chunk=64)] == want
    assert [as_tuple(x) for x in label_features(feats, backend, workers=2, chunk=64)] == want


def test_batch_equals_per_feature_on_peer_file():
    feats = [r.examples for r in peer_records()]
    for backend in (RuleBackend(), RuleBackend(use_dictionary=False)):
        want = [reference(e, backend) for e in feats]
        assert [as_tuple(x) for x in label_features(feats, backend)] == want


def test_batch_handles_no_features_and_dead_latents():
    assert label_features([]) == []
    (lab,) = label_features([[]])
    assert (lab.granularity, lab.language_paper, lab.language_script) == (
        "uninterpretable", "mix", "mix")


def test_batch_asks_other_backends_feature_by_feature():
    class Judge:
        def classify(self, examples):
            return "semantic", 0.7

    (lab,) = label_features([build_examples([" Tokyo"] * 5)], Judge())
    assert (lab.granularity, lab.confidence, lab.language_script) == ("semantic", 0.7, "en")


# ------------------------------------------------------------------------ context variety
def test_context_variety_statistic_and_rule():
    kata = ["ク", "ツ", "リ", "ニ", "ラン", "シャ"] * 2
    fixed = [[(" the", 0), ("・", 1), (t, 10)] for t in kata]
    varied = [[(c, 0), (t, 10)] for c, t in zip(
        [" a", "の", " to", "。", " in", "が", " of", "を", " at", "は", " by", "も"],
        ["ク", "ツ", "リ", "ニ", "ラン", "シャ"] * 2)]
    st_fixed, st_varied = token_stats(fixed), token_stats(varied)
    assert st_fixed.ctx_prev == pytest.approx(1 / 12)
    assert st_varied.ctx_prev == pytest.approx(1.0)
    p = RuleParams(sem_ctx_max=0.5, min_examples=3)
    assert decide(st_fixed, p)[0] == "semantic"
    assert decide(st_varied, p)[0] == "uninterpretable"  # one shape, but no common context
    assert decide(st_varied, RuleParams(min_examples=3))[0] == "semantic"  # rule off: 1.0


# ---------------------------------------------------------------------------------- LOCO
def synthetic_records():
    recs = []
    for ckpt in (1, 2, 3):
        for i in range(6):
            recs.append(FeatureRecord(ckpt, i, build_examples([f" w{ckpt}{i}"] * 8),
                                      granularity="token"))
            recs.append(FeatureRecord(ckpt, 10 + i, build_examples(
                [" the", "の", "<0x0A>", " 岡山市", "do", "B", "異", " An"], seed=i),
                granularity="uninterpretable"))
    return recs


def test_loco_holds_out_each_checkpoint_once():
    recs = synthetic_records()
    rots = loco(recs, None)
    assert [r.held for r in rots] == [1, 2, 3]
    assert all(r.n_fit == 24 and r.agreement.n == 12 for r in rots)
    assert all(r.agreement.kappa == pytest.approx(1.0) for r in rots)
    m = loco_confusion(rots)
    assert sum(map(sum, m)) == len(recs)
    with pytest.raises(ValueError, match="two checkpoints"):
        loco([r for r in recs if r.checkpoint == 1], None)


def test_loco_never_sees_the_held_out_checkpoint():
    # the held-out checkpoint's labels are scrambled: if they leaked into the fit, the fitted
    # thresholds (and so the other rotations' figures) would change
    recs = synthetic_records()
    stats = [token_stats(r.examples) for r in recs]
    gold = [r.granularity for r in recs]
    groups = [r.checkpoint for r in recs]
    base = loco_from_stats(stats, gold, groups)
    scrambled = [("semantic" if g == 3 else lab) for lab, g in zip(gold, groups)]
    other = loco_from_stats(stats, scrambled, groups)
    assert other[2].params == base[2].params  # fitted on 1 and 2 only
    assert other[2].agreement.kappa < base[2].agreement.kappa


def test_loco_on_peer_file_keeps_its_measured_level(capsys):
    recs = peer_records()
    dic = dictionary.default_dictionary()
    rots = loco(recs, dic)
    ks = [r.agreement.kappa for r in rots]
    with capsys.disabled():
        print(f"\nLOCO kappa (dictionary {'on' if dic else 'off'}): "
              + ", ".join(f"{r.held} {k:.3f}" for r, k in zip(rots, ks)))
    # regression guards at the measured level (docs/labels-eval.md), not the goal
    assert min(ks) >= 0.72 and sum(ks) / len(ks) >= 0.76  # measured 0.748 / 0.783 (0.740 off)
    assert "sem_ctx_max" in GRID


# ------------------------------------------------------------------------ label --fit
def test_label_fit_writes_params_and_reports_loco(tmp_path, capsys):
    recs = peer_records()
    labels = tmp_path / "mine.jsonl"
    labels.write_text("".join(json.dumps({"checkpoint": r.checkpoint, "feature": r.feature,
                                          "granularity": r.granularity}) + "\n"
                              for r in recs if r.feature % 2 == 0), encoding="utf-8")
    out = tmp_path / "params.json"
    assert main(["label", "--input", str(PEER), "--fit", str(labels),
                 "--params-out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "LOCO on your labels" in text and f"wrote {out}" in text
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["fit"]["n_fit"] == sum(r.feature % 2 == 0 for r in recs)
    assert set(data["fit"]["loco_kappa"]) == {"10", "1000", "100000"}
    assert backend_from_params(str(out)).params == RuleParams(**data["params"])
    # the pooled LOCO confusion on those labels, for the share figures' intervals
    m = load_confusion(out)
    assert m is not None and sum(map(sum, m)) == data["fit"]["n_fit"]


def test_label_fit_bad_input(tmp_path, capsys):
    good = tmp_path / "l.jsonl"
    good.write_text(json.dumps({"checkpoint": 1, "feature": 0, "granularity": "token"}) + "\n")
    ex = tmp_path / "ex.jsonl"
    ex.write_text(json.dumps({"checkpoint": 1, "feature": 5, "examples":
                              build_examples([" a"] * 3)}) + "\n")
    assert main(["label", "--input", str(ex), "--fit", str(good)]) == 2
    assert "--params-out" in capsys.readouterr().err
    assert main(["label", "--input", str(ex), "--fit", str(good),
                 "--params-out", str(tmp_path / "p.json")]) == 2
    assert "not in the examples file" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_backend_from_params_errors_name_the_field(tmp_path):
    assert backend_from_params(None).params == RuleParams.load()
    with pytest.raises(UserError, match="granularity_params: .*nope.json"):
        backend_from_params(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"params": {"token_p1": 0.5, "bogus": 1}}))
    with pytest.raises(UserError, match="bogus"):
        backend_from_params(str(bad))


def test_features_config_takes_refit_params():
    from llmjp_ckpt.features.analyze import FeaturesConfig

    assert FeaturesConfig(granularity_params="p.json").granularity_params == "p.json"
    assert FeaturesConfig().granularity_params is None


# ------------------------------------------------------------------- bootstrap intervals
def test_share_intervals_over_features():
    labs = {10: ["token"] * 30 + ["semantic"] * 10, 1000: ["token"] * 4}
    iv = share_intervals(labs, n_boot=500)
    t = iv[10]["token"]
    assert t.share == pytest.approx(0.75) and t.lo < 0.75 < t.hi
    assert 0.55 < t.lo and t.hi < 0.9
    assert iv[1000]["token"].lo == iv[1000]["token"].hi == 1.0  # no spread in one class
    assert iv[10]["synonym"].hi == 0.0


def test_share_intervals_with_confusion_correct_and_widen():
    labs = {1: ["token"] * 50 + ["semantic"] * 50}
    k = len(LABELS)
    perfect = [[100 if i == j else 0 for j in range(k)] for i in range(k)]
    # half of what we call semantic the authors call uninterpretable
    confused = [row[:] for row in perfect]
    confused[LABELS.index("uninterpretable")][LABELS.index("semantic")] = 100
    a = share_intervals(labs, perfect, n_boot=500)[1]
    b = share_intervals(labs, confused, n_boot=500)[1]
    assert a["semantic"].corrected == pytest.approx(0.5, abs=0.03)
    assert b["semantic"].corrected == pytest.approx(0.25, abs=0.04)
    assert b["uninterpretable"].lo > 0.1
    with pytest.raises(ValueError):
        share_intervals(labs, [[1]])
    with pytest.raises(ValueError):
        share_intervals(labs, level=1.5)
