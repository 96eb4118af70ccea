"""The fixed-frame semantic rule and the inner-LOCO pull toward the a-priori thresholds."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from llmjp_ckpt.labels.evaluate import GRID, choose_shrink, fit, fit_auto, loco_from_stats
from llmjp_ckpt.labels.granularity import RuleParams, decide, token_stats
from tests.labels.test_batch import synthetic_records
from tests.labels_builders import build_examples

SLOT = [" air", " screen", " stage"]


def _frame(prevs, fills):
    return [[(p, 0), (f, 10), (".", 0)] for p, f in zip(prevs, fills)]


def test_fixed_frame_is_semantic_even_when_one_form_dominates():
    fills = [" air"] * 30 + [" screen"] * 15 + [" stage"] * 5  # p1 0.6, p2 0.9: a token pair
    fixed = token_stats(_frame([" on"] * 50, fills))
    varied = token_stats(_frame([f" w{i}" for i in range(50)], fills))
    assert fixed.ctx_prev == pytest.approx(1 / 50) and varied.ctx_prev == pytest.approx(1.0)
    p = RuleParams(token_p1=0.55)
    assert decide(fixed, p)[0] == "semantic"
    assert decide(varied, p)[0] == "token"  # the same forms after varied tokens: no frame
    assert decide(fixed, RuleParams(token_p1=0.55, sem_frame_ctx=0.0))[0] == "token"  # rule off


def test_fixed_frame_needs_three_forms_and_no_dominant_one():
    two = token_stats(_frame([" on"] * 50, [" air"] * 30 + [" screen"] * 20))
    dominant = token_stats(_frame([" on"] * 50, [" air"] * 45 + [" screen", " stage"] * 2 + [" x"]))
    assert decide(two, RuleParams())[0] == "token"  # two forms: a token pair, as before
    assert decide(dominant, RuleParams())[0] == "token"  # top form 0.9 ≥ sem_frame_p1


def test_frame_thresholds_are_fixed_a_priori():
    assert not {"sem_frame_ctx", "sem_frame_p1"} & set(GRID)
    assert RuleParams.load().sem_frame_ctx == RuleParams().sem_frame_ctx == 0.05


def _data():
    recs = synthetic_records()
    return ([token_stats(r.examples) for r in recs], [r.granularity for r in recs],
            [r.checkpoint for r in recs])


def test_strong_pull_keeps_the_a_priori_thresholds():
    stats, gold, groups = _data()
    # token features whose top form has 6 of 8 examples: a prior token_p1 of 0.95 misses them
    mostly = [token_stats(build_examples([f" w{i}"] * 6 + [" x", " y"], seed=i)) for i in range(6)]
    stats, gold, groups = stats + mostly, gold + ["token"] * 6, groups + [1, 2, 3] * 2
    prior = RuleParams(token_p1=0.95)
    assert fit(stats, gold, groups, start=prior).token_p1 <= 0.75  # a plain fit moves ...
    assert fit(stats, gold, groups, start=prior, shrink=1000.0) == prior  # ... a strong pull not


def test_choose_shrink_uses_inner_loco_and_prefers_the_stronger_pull_on_ties():
    stats, gold, groups = _data()
    assert choose_shrink(stats, gold, groups, candidates=(0.0, 0.5)) == 0.5  # all fits tie at κ 1
    one = [i for i, g in enumerate(groups) if g == 1]
    assert choose_shrink([stats[i] for i in one], [gold[i] for i in one], [1] * len(one)) == 0.0
    p, lam = fit_auto(stats, gold, groups, shrink=0.0)
    assert lam == 0.0 and p == fit(stats, gold, groups)


def test_loco_rotations_record_their_pull_and_never_see_the_held_out_labels():
    stats, gold, groups = _data()
    base = loco_from_stats(stats, gold, groups)
    scrambled = [("semantic" if g == 3 else lab) for lab, g in zip(gold, groups)]
    other = loco_from_stats(stats, scrambled, groups)
    assert other[2].shrink == base[2].shrink and asdict(other[2].params) == asdict(base[2].params)


def test_semantic_needs_recurring_forms():
    kata = [chr(0x30A2 + i) for i in range(0, 80, 2)][:40]  # 40 distinct katakana pieces
    recurring = token_stats(build_examples(kata[:10] * 4))  # 10 forms, each 4 times
    fresh = token_stats(build_examples(kata))  # a new form in every example
    p = RuleParams(min_examples=3)
    assert recurring.shape == fresh.shape == 1.0
    assert decide(recurring, p)[0] == "semantic"
    assert decide(fresh, p)[0] == "uninterpretable"
    assert decide(fresh, RuleParams(min_examples=3, sem_distinct_max=1.0))[0] == "semantic"
    assert "sem_distinct_max" in GRID


def test_label_fit_reads_gzipped_labels_and_rejects_binary(tmp_path):
    import gzip
    import json

    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.labels.manual import read_labels

    gz = tmp_path / "labels.jsonl.gz"
    gz.write_bytes(gzip.compress(json.dumps({"checkpoint": 10, "feature": 3,
                                             "granularity": "semantic"}).encode() + b"\n"))
    assert read_labels(gz) == {(10, 3): "semantic"}
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(UserError, match="UTF-8 JSONL"):
        read_labels(bad)
