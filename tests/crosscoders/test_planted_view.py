"""The crosscoder's view of planted concepts: present latents scored per checkpoint, births."""

from __future__ import annotations

import pandas as pd
import pytest

from llmjp_ckpt.crosscoders.planted import planted_view
from llmjp_ckpt.toy.recovery import planted_kind

STEPS = [10, 100, 1000]
# ids: 1 猫, 3 ▁cat, 6 赤, 7 ▁red, 9 ▁the (no form)
FORMS = {1: {("cat", "animal", "ja", "猫")}, 3: {("cat", "animal", "en", "cat")},
         6: {("red", "colour", "ja", "赤")}, 7: {("red", "colour", "en", "red")}}
LATENTS = {  # top ids, labels (paper, script, granularity), steps present
    0: ([1] * 30 + [3] * 20, ("mix", "mix", "synonym"), {100, 1000}),   # cat translation from 100
    1: ([1] * 50, ("ja", "ja", "token"), set(STEPS)),                    # 猫 token throughout
    2: ([6] * 25 + [7] * 25, ("ja", "ja", "semantic"), {1000}),          # red translation, late
    3: ([9] * 50, ("en", "en", "token"), set(STEPS)),                    # not planted
}
TIMELINE = {"checkpoints": [{"step": 10, "bilingual": []}, {"step": 100, "bilingual": ["cat"]},
                            {"step": 1000, "bilingual": ["cat", "red"]}],
            "bilingual_step": {"cat": 100, "red": 100}}


@pytest.fixture()
def view():
    df = pd.DataFrame([{"checkpoint": s, "feature": f, "present": s in pres, "language_paper": lab[0],
                        "language_script": lab[1], "granularity": lab[2]}
                       for s in STEPS for f, (_, lab, pres) in LATENTS.items()])
    kinds = {f: p for f, (ids, _, _) in LATENTS.items() if (p := planted_kind(ids, FORMS)) is not None}
    assert sorted(kinds) == [0, 1, 2]
    return planted_view(df, kinds, STEPS, TIMELINE)


def test_only_the_latents_present_at_a_checkpoint_are_scored(view):
    c = view["checkpoints"]
    assert [c[str(s)]["present_latents"] for s in STEPS] == [2, 3, 4]
    assert [c[str(s)]["planted"] for s in STEPS] == [1, 2, 3]
    assert [c[str(s)]["bilingual"] for s in STEPS] == [0, 1, 2]
    assert c["100"]["mix_paper"] == {"tp": 1, "predicted": 1, "actual": 1, "precision": 1.0, "recall": 1.0}
    assert c["1000"]["mix_paper"]["recall"] == 0.5  # red is present but labelled ja
    assert c["1000"]["translation_concepts"] == ["cat", "red"]
    assert c["100"]["vs_timeline"]["both"] == 1 and c["1000"]["vs_timeline"]["both"] == 2
    assert c["10"]["shares"]["concept_level"] == 0.0 and c["1000"]["shares"]["mix_paper"] == 0.25


def test_translation_latents_born_against_the_timeline(view):
    b = view["births"]
    got = {x["concept"]: (x["present_from"], x["timeline_step"]) for x in b["latents"]}
    assert got == {"cat": (100, 100), "red": (1000, 100)}
    assert b["present_from_matches_timeline"] == 1 and b["match_fraction"] == 0.5


def test_no_toy_no_view(tmp_path):
    from llmjp_ckpt.crosscoders.planted import toy_view

    assert toy_view(tmp_path, None, None, STEPS) is None
