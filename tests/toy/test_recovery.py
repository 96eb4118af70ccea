"""Scoring SAE features against the planted truth, on small synthetic feature rows.

A form map ``token id -> (concept, category, language, form)`` stands in for ``concepts.json``
and a feature is the list of its examples' max-activating token ids.
"""

from __future__ import annotations

import pytest

from llmjp_ckpt.toy.recovery import planted_kind, score_rows

# ids: 1 猫, 2 ネコ, 3 ▁cat, 4 犬, 5 ▁dog, 6 赤, 7 ▁red, 8 閣 (a piece of two places), 9 ▁the (no form)
FORMS = {
    1: {("cat", "animal", "ja", "猫")}, 2: {("cat", "animal", "ja", "ネコ")},
    3: {("cat", "animal", "en", "cat")}, 4: {("dog", "animal", "ja", "犬")},
    5: {("dog", "animal", "en", "dog")}, 6: {("red", "colour", "ja", "赤")},
    7: {("red", "colour", "en", "red")},
    8: {("kinkakuji", "place", "ja", "金閣寺"), ("ginkakuji", "place", "ja", "銀閣寺")},
}


def feature(**counts: int) -> list[int]:
    """Top ids from counts per id, e.g. ``feature(i1=30, i3=20)``."""
    return [int(k[1:]) for k, n in counts.items() for _ in range(n)]


@pytest.mark.parametrize(("ids", "kind", "bilingual", "concept_level"), [
    (feature(i1=30, i3=20), "translation", True, True),       # 猫 and cat: the study's bilingual feature
    (feature(i1=50), "token", False, False),                   # 猫 only
    (feature(i1=46, i9=4), "token", False, False),             # 猫 plus a few non-forms: still planted
    (feature(i1=30, i2=20), "variant", False, True),           # 猫 / ネコ: concept-level, one language
    (feature(i1=25, i4=25), "category", False, True),          # 猫 and 犬: animals
    (feature(i1=20, i5=30), "category", True, True),           # 猫 and dog: animals, both languages
    (feature(i1=48, i3=2), "token", False, False),             # one cat example is no translation
    (feature(i8=50), None, None, None),                        # a piece of two concepts, one category
])
def test_planted_kind(ids, kind, bilingual, concept_level):
    p = planted_kind(ids, FORMS)
    if kind is None:
        assert p is None  # no concept: nothing to score
        return
    assert p is not None and p["kind"] == kind
    assert p["bilingual"] is bilingual and p["concept_level"] is concept_level


def test_unplanted_features_are_not_scored():
    assert planted_kind(feature(i9=50), FORMS) is None                 # function word
    assert planted_kind(feature(i1=25, i6=25), FORMS) is None          # two categories
    assert planted_kind(feature(i1=40, i9=10), FORMS) is None          # 80 % forms only
    assert planted_kind([], FORMS) is None


def _row(ids: list[int], paper: str, script: str, granularity: str) -> dict:
    p = planted_kind(ids, FORMS)
    assert p is not None
    return {**p, "language_paper": paper, "language_script": script, "granularity": granularity}


def test_a_planted_bilingual_feature_is_counted_a_monolingual_one_is_not():
    rows = [
        _row(feature(i1=30, i3=20), "mix", "mix", "synonym"),    # bilingual, labelled mix: TP
        _row(feature(i6=25, i7=25), "mix", "ja", "semantic"),    # bilingual (赤 / red): TP by paper only
        _row(feature(i1=50), "ja", "ja", "token"),               # monolingual token: negative, right
        _row(feature(i5=50), "mix", "en", "token"),              # monolingual labelled mix: a false positive
        _row(feature(i1=25, i4=25), "ja", "ja", "token"),        # category, missed as token
    ]
    s = score_rows(rows, timeline_bilingual=["cat", "dog"])
    assert s["planted"] == 5 and s["bilingual"] == 2
    assert s["by_kind"] == {"token": 2, "variant": 0, "translation": 2, "category": 1}
    assert s["mix_paper"] == {"tp": 2, "predicted": 3, "actual": 2, "precision": 0.6667, "recall": 1.0}
    assert s["mix_script"] == {"tp": 1, "predicted": 1, "actual": 2, "precision": 1.0, "recall": 0.5}
    assert s["concept_level"] == {"tp": 2, "predicted": 2, "actual": 3, "precision": 1.0, "recall": 0.6667}
    # recovered translation concepts (cat, red) against the timeline's bilingual ones (cat, dog)
    assert s["translation_concepts"] == ["cat", "red"]
    assert s["vs_timeline"] == {"timeline_bilingual": 2, "recovered": 2, "both": 1,
                                "precision": 0.5, "recall": 0.5}


def test_no_bilingual_feature_means_no_recall_not_a_perfect_one():
    s = score_rows([_row(feature(i1=50), "ja", "ja", "token")], timeline_bilingual=[])
    assert s["mix_paper"]["recall"] is None and s["mix_paper"]["precision"] is None
    assert s["vs_timeline"]["recall"] is None and s["vs_timeline"]["precision"] is None


def test_a_recovered_variant_feature_is_scored_against_the_merged_variants():
    rows = [
        _row(feature(i1=30, i2=20), "ja", "ja", "synonym"),      # 猫 / ネコ, labelled synonym: TP
        _row(feature(i1=30, i3=20), "mix", "mix", "token"),      # 猫 / cat: a synonym missed as token
        _row(feature(i1=25, i4=25), "ja", "ja", "synonym"),      # 猫 / 犬: a category called synonym: FP
        _row(feature(i1=50), "ja", "ja", "token"),               # 猫 alone: a token, right
    ]
    s = score_rows(rows, timeline_bilingual=[], timeline_merged=["cat", "rabbit"])
    assert s["variant_concepts"] == ["cat"]
    assert s["variants_vs_timeline"] == {"timeline": 2, "recovered": 1, "both": 1,
                                         "precision": 1.0, "recall": 0.5}
    assert s["synonym"] == {"tp": 1, "predicted": 2, "actual": 2, "precision": 0.5, "recall": 0.5}
    # a variant the timeline does not call merged is a false recovery, not a hit
    s = score_rows(rows[:1], timeline_merged=["dog"])
    assert s["variants_vs_timeline"]["both"] == 0 and s["variants_vs_timeline"]["precision"] == 0.0
    assert "variants_vs_timeline" not in score_rows(rows[:1])  # no timeline: nothing claimed


def test_lineage_births_are_checked_against_the_timeline_step_per_kind(tmp_path):
    import pandas as pd

    from llmjp_ckpt.toy.recovery import lineage_births

    folder = tmp_path / "analysis" / "lineages"
    folder.mkdir(parents=True)
    # chain 0: feature 5 at 100 (a token) -> 7 at 1000 (猫 / ネコ) -> 7 at 2000 (猫 / ネコ);
    # chain 1: a variant feature of dog from 300; chain 2: never planted
    pd.DataFrame({"chain": [0, 0, 0, 1, 1, 2], "checkpoint": [100, 1000, 2000, 300, 1000, 1000],
                  "feature": [5, 7, 7, 9, 9, 11]}).to_parquet(folder / "sae.parquet")
    cat_v, dog_v = planted_kind(feature(i1=30, i2=20), FORMS), {"kind": "variant", "concepts": ["dog"]}
    planted = {(100, 5): planted_kind(feature(i1=50), FORMS), (1000, 7): cat_v, (2000, 7): cat_v,
               (300, 9): dog_v, (1000, 9): dog_v}
    out = lineage_births(tmp_path, "sae", planted, {"cat": 1000, "dog": 1000}, kind="variant")
    assert [(r["chain"], r["concept"], r["chain_birth"], r["kind_from"]) for r in out["lineages"]] == [
        (0, "cat", 100, 1000), (1, "dog", 300, 300)]
    assert (out["with_timeline_step"], out["from_matches_timeline"], out["match_fraction"]) == (2, 1, 0.5)
    assert lineage_births(tmp_path, "sae", planted, {"cat": 1000})["lineages"] == []  # no translation kind
    assert lineage_births(tmp_path, "missing", planted, {}) is None
