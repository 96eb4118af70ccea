"""Share intervals with the classifier's LOCO confusion: what the thresholds file records, and
how labels outside the confused classes (dead latents' ``unlabelled``) pass through."""

from __future__ import annotations

import json
import logging

import pytest

from llmjp_ckpt.labels.evaluate import Rotation, confusion_info, loco_confusion
from llmjp_ckpt.labels.granularity import LABELS, PARAMS_FILE, RuleParams
from llmjp_ckpt.labels.uncertainty import load_confusion, share_intervals


def _perfect(n: int = 100) -> list[list[int]]:
    return [[n if i == j else 0 for j in range(len(LABELS))] for i in range(len(LABELS))]


def test_the_shipped_thresholds_carry_their_loco_confusion():
    m = load_confusion()
    data = json.loads(PARAMS_FILE.read_text(encoding="utf-8"))
    assert m is not None and len(m) == len(LABELS) and all(len(r) == len(LABELS) for r in m)
    assert sum(map(sum, m)) == data["fit"]["n_fit"]  # every labelled feature, held out once
    # the diagonal agrees with the recorded per-rotation kappas: most features right
    assert sum(m[i][i] for i in range(len(LABELS))) / sum(map(sum, m)) > 0.8


def test_load_confusion_without_one_logs_and_bad_one_raises(tmp_path, caplog):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"fit": {"n_fit": 3}, "params": {}}), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert load_confusion(old) is None
    assert [r for r in caplog.records if "no LOCO confusion" in r.getMessage()]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fit": {"loco_confusion": {"labels": ["a"], "matrix": [[1]]}}}),
                   encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json: fit.loco_confusion"):
        load_confusion(bad)


def test_confusion_info_is_the_pooled_rotations():
    class _Agreement:  # a rotation's agreement is read for its confusion matrix only
        matrix = _perfect(2)

    rots = [Rotation(held, 0, RuleParams(), _Agreement(), [], []) for held in (1, 2)]
    assert confusion_info([]) == {}
    info = confusion_info(rots)["loco_confusion"]
    assert info["labels"] == list(LABELS) and info["matrix"] == loco_confusion(rots)
    assert info["matrix"][0][0] == 4 and info["matrix"][0][1] == 0


def test_unconfused_labels_pass_through_and_missing_classes_are_added():
    labs = {0: ["token"] * 60 + ["unlabelled"] * 40}
    iv = share_intervals(labs, _perfect(), classes=["token", "unlabelled"], n_boot=400)[0]
    assert set(iv) == {"token", "unlabelled", *LABELS}  # a true class nobody was labelled
    assert iv["unlabelled"].share == pytest.approx(0.4)
    assert iv["unlabelled"].corrected == pytest.approx(0.4, abs=0.03)  # resampled, not confused
    assert iv["synonym"].hi < 0.03
    # half of what is called token is truly semantic: the interval moves, unlabelled does not
    m = _perfect()
    m[LABELS.index("semantic")][LABELS.index("token")] = 100
    jv = share_intervals(labs, m, classes=["token", "unlabelled"], n_boot=400)[0]
    assert jv["token"].corrected == pytest.approx(0.3, abs=0.04) and jv["token"].hi < 0.45
    assert jv["semantic"].lo > 0.15
    assert jv["unlabelled"].corrected == pytest.approx(0.4, abs=0.03)
    with pytest.raises(ValueError, match="not in classes"):
        share_intervals({0: ["nope"]}, classes=["token"])


def test_the_confusion_widens_the_interval_of_a_large_checkpoint():
    """32,768 latents: resampling them alone gives a band under a point; the classifier's
    estimated confusion (from ~300 labelled features) is what keeps it honest."""
    labs = {0: ["token"] * 20000 + ["semantic"] * 8000 + ["uninterpretable"] * 4768}
    m = load_confusion()
    plain = share_intervals(labs, n_boot=300)[0]["semantic"]
    conf = share_intervals(labs, m, n_boot=300)[0]["semantic"]
    assert plain.hi - plain.lo < 0.015
    assert conf.hi - conf.lo > 3 * (plain.hi - plain.lo)
