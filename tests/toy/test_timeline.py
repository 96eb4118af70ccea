"""The planted timeline: its decisions on hand-set vectors, and its determinism on the quick toy."""

from __future__ import annotations

import json

import torch

from llmjp_ckpt.toy.lexicon import CATEGORIES, CONCEPTS
from llmjp_ckpt.toy.timeline import FILE, decide, decide_variants, planted_timeline, summarise, write_timeline


def test_shared_direction_is_bilingual_language_direction_is_not():
    n = len(CONCEPTS)
    ja, en = torch.eye(2 * n)[:n], torch.eye(2 * n)[n:]  # every form its own direction: cos 0
    en[:3] += 2 * ja[:3]  # three concepts whose en form shares its ja form's direction
    out = decide(ja, en)
    bi = [c for c, v in out["concepts"].items() if v["bilingual"]]
    assert bi == [c.id for c in CONCEPTS[:3]]
    assert out["concepts"][CONCEPTS[0].id]["retrieval_rank"] == 0
    assert set(out["categories"]) == set(CATEGORIES)
    assert not any(v["grouped"] for v in out["categories"].values())  # random: no category structure


def test_categories_group_when_their_concepts_share_a_direction():
    d = 64
    g = torch.Generator().manual_seed(1)
    axis = {cat: torch.randn(d, generator=g) for cat in CATEGORIES}
    ja = torch.stack([axis[c.category] + 0.5 * torch.randn(d, generator=g) for c in CONCEPTS])
    en = torch.stack([axis[c.category] + 0.5 * torch.randn(d, generator=g) for c in CONCEPTS])
    out = decide(ja, en)
    assert all(v["grouped"] for v in out["categories"].values())
    assert all(v["gap"] > 0.3 for v in out["categories"].values())


def test_a_variant_sharing_its_main_forms_direction_is_merged_an_unrelated_one_is_not():
    n = 6
    ids = [f"c{i}" for i in range(n)]
    main, variant = torch.eye(2 * n)[:n], torch.eye(2 * n)[n:]  # each form its own direction
    variant[:2] += 2 * main[:2]  # two variants written differently but used like their main form
    out = decide_variants(ids, main, variant)
    assert [c for c, v in out.items() if v["merged"]] == ["c0", "c1"]
    assert out["c0"]["retrieval_rank"] == 0 and out["c0"]["margin"] > 0.5
    variant[2] = main[3]  # c2's variant looks like c3's main form: not a synonym of its own
    assert not decide_variants(ids, main, variant)["c2"]["merged"]


def test_bilingual_step_is_where_a_concept_stays_bilingual():
    def row(step: int, bilingual: set[str]) -> dict:
        return {"step": step,
                "concepts": {c.id: {"bilingual": c.id in bilingual, "margin": 0.0, "translation_acc": None}
                             for c in CONCEPTS},
                "categories": {k: {"grouped": False} for k in CATEGORIES}}

    cat, dog = CONCEPTS[0].id, CONCEPTS[1].id
    out = summarise([row(10, {cat}), row(30, set()), row(100, {cat, dog}), row(300, {cat, dog})], 0, 2)
    assert out["bilingual_step"][cat] == 100  # the flicker at 10 is not its birth
    assert out["bilingual_step"][dog] == 100
    assert out["bilingual_step"][CONCEPTS[2].id] is None
    assert out["checkpoints"][2]["bilingual"] == [cat, dog]
    assert out["checkpoints"][3]["bilingual_share"] == round(2 / len(CONCEPTS), 4)
    assert out["variant_step"] == {}  # rows without variant decisions: none claimed


def test_variant_step_is_where_a_variant_stays_merged():
    def row(step: int, merged: set[str]) -> dict:
        return {"step": step,
                "concepts": {c.id: {"bilingual": False, "margin": 0.0, "translation_acc": None} for c in CONCEPTS},
                "categories": {k: {"grouped": False} for k in CATEGORIES},
                "variants": {v: {"merged": v in merged} for v in ("cat", "dog")}}

    out = summarise([row(10, {"cat"}), row(30, set()), row(100, {"cat"}), row(300, {"cat", "dog"})], 0, 2)
    assert out["variant_step"] == {"cat": 100, "dog": 300}
    assert [r["merged_share"] for r in out["checkpoints"]] == [0.5, 0.0, 0.5, 1.0]
    assert out["checkpoints"][3]["variants_merged"] == ["cat", "dog"]


def test_timeline_of_the_quick_toy_is_deterministic(toy_dir, tmp_path):
    a = planted_timeline(toy_dir)
    path = write_timeline(toy_dir, tmp_path / FILE)
    b = json.loads(path.read_text(encoding="utf-8"))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    info = json.loads((toy_dir / "toy.json").read_text(encoding="utf-8"))
    assert a["steps"] == info["steps"] and a["seed"] == info["seed"]
    for row in a["checkpoints"]:
        assert set(row["concepts"]) == {c.id for c in CONCEPTS}
        assert set(row["variants"]) == {c.id for c in CONCEPTS if len(c.ja) > 1}
        assert len(row["bilingual"]) + len(row["monolingual"]) == len(CONCEPTS)
        assert all(-1.0 <= v["cos_same"] <= 1.0 for v in row["concepts"].values())
