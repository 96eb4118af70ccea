"""Word vectors as a meaning source (``labels.meaning``), on hand-built tables: offline, no ja-ginza."""

from __future__ import annotations

import math

import pytest

from llmjp_ckpt.labels import evaluate, meaning
from llmjp_ckpt.labels.batch import label_features
from llmjp_ckpt.labels.granularity import RuleBackend, RuleParams, decide, token_stats
from tests.labels.test_batch import as_tuple, random_features, reference
from tests.labels_builders import build_examples

# animals close together, cities close together, animals and cities orthogonal
TABLE = {"猫": [1.0, 0.1, 0.0], "犬": [0.9, 0.2, 0.0], "馬": [1.0, 0.0, 0.1],
         "東京": [0.0, 1.0, 0.0], "大阪": [0.1, 0.9, 0.0], "Tokyo": [0.0, 1.0, 0.1],
         "机": [0.0, 0.0, 1.0], "雨": [0.0, -0.1, -1.0]}
ANIMALS = ["猫", "犬", "馬"]
MIXED = ["猫", "東京", "机"]  # one of each kind: unrelated


@pytest.fixture
def vec():
    return meaning.WordVectors.from_table(TABLE)


def _kinds(forms, **kw):
    return build_examples(forms * 4, **kw)  # each form 4 times: forms recur


def test_vector_stats_mean_pairwise_cosine(vec):
    sim, k = meaning.vector_stats([(f,) for f in ANIMALS], vec)
    assert k == 3 and sim > 0.95
    sim, k = meaning.vector_stats([(f,) for f in MIXED], vec)
    assert k == 3 and abs(sim) < 0.1
    # the first name of a form with a vector counts; unknown forms add nothing
    assert meaning.vector_stats([("zz", "猫"), ("犬",), ("qq",)], vec)[1] == 2
    assert meaning.vector_stats([("tokyo",)], vec) == (0.0, 1)  # found capitalised; one form: no pair
    assert meaning.vector_stats([], vec) == (0.0, 0)


def test_token_stats_carry_vector_evidence_only_when_a_table_is_given(vec):
    ex = _kinds(ANIMALS)
    plain = token_stats(ex)
    assert (plain.vec_sim, plain.vec_forms) == (0.0, 0)
    st = token_stats(ex, vectors=vec)
    assert st.vec_forms == 3 and st.vec_sim > 0.95
    assert (st.p1, st.shape, st.cluster) == (plain.p1, plain.shape, plain.cluster)  # nothing else moves


def test_vector_rule_makes_semantic_what_shape_cannot(vec):
    # cities in two scripts: no shape class covers 0.9, so only meaning can make it semantic
    ex_close = _kinds(["東京", "大阪", " Tokyo"])  # two scripts, one meaning (cities)
    ex_far = _kinds(["東京", "机", " Tokyo", "雨"])
    p_off = RuleParams(sem_shape=0.9, min_examples=3)  # shape rule cannot fire: mixed scripts
    p_on = RuleParams(sem_shape=0.9, min_examples=3, sem_vec_min=0.5)
    near, far = token_stats(ex_close, vectors=vec), token_stats(ex_far, vectors=vec)
    assert decide(near, p_off)[0] == "uninterpretable"
    assert decide(near, p_on)[0] == "semantic"
    assert decide(far, p_on)[0] == "uninterpretable"  # unrelated forms: no meaning in common
    assert decide(token_stats(ex_close), p_on)[0] == "uninterpretable"  # no table: rule silent


def test_vector_veto_and_too_few_forms(vec):
    p = RuleParams(min_examples=3)
    unrelated = token_stats(_kinds(["猫", "東京", "机"]), vectors=vec)  # all kanji: shape says semantic
    assert decide(unrelated, p)[0] == "semantic"
    assert decide(unrelated, RuleParams(min_examples=3, sem_vec_veto=0.3))[0] == "uninterpretable"
    two = token_stats(_kinds(["猫", "東京", "蛙"]), vectors=vec)  # 蛙 has no vector: 2 forms, no say
    assert two.vec_forms == 2
    assert decide(two, RuleParams(min_examples=3, sem_vec_veto=0.3))[0] == "semantic"
    # a negative mean cosine does not veto when the veto is off (0)
    neg = token_stats(_kinds(["机", "雨", "東京"]), vectors=vec)
    assert neg.vec_sim < 0 and decide(neg, p)[0] == "semantic"


def test_backend_loads_vectors_only_when_its_rules_read_them(vec, monkeypatch):
    calls = []
    monkeypatch.setattr("llmjp_ckpt.labels.granularity.default_vectors",
                        lambda: calls.append(1) or vec)
    assert RuleBackend(params=RuleParams()).resolved_vectors() is None and not calls
    on = RuleBackend(params=RuleParams(sem_vec_min=0.5))
    assert on.resolved_vectors() is vec and calls
    assert RuleBackend(params=RuleParams(sem_vec_min=0.5), use_vectors=False).resolved_vectors() is None
    given = RuleBackend(params=RuleParams(), vectors=vec)
    assert given.resolved_vectors() is vec


def test_batch_equals_per_feature_with_vectors(vec):
    backend = RuleBackend(params=RuleParams(sem_vec_min=0.3, sem_vec_veto=0.1), vectors=vec,
                          use_dictionary=False)
    feats = random_features(120, seed=3) + [_kinds(ANIMALS), _kinds(MIXED), _kinds(["東京", " Tokyo", "大阪"])]
    want = [reference(e, backend) for e in feats]
    assert [as_tuple(x) for x in label_features(feats, backend, chunk=32)] == want


def test_missing_ja_ginza_degrades_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(meaning, "ginza_vocab_dir", lambda: None)
    monkeypatch.setattr(meaning, "_DEFAULT", None)
    monkeypatch.setattr(meaning, "_LOOKED", False)
    with caplog.at_level("WARNING", logger="llmjp_ckpt.labels.meaning"):
        assert meaning.default_vectors() is None
        assert meaning.default_vectors() is None
    assert caplog.text.count("ja-ginza is not installed") == 1
    backend = RuleBackend(params=RuleParams(sem_vec_min=0.3, min_examples=3), use_dictionary=False)
    assert backend.classify(_kinds(["東京", "大阪", " Tokyo"]))[0] == "uninterpretable"  # still works


def test_unreadable_vectors_degrade_too(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(meaning, "ginza_vocab_dir", lambda: tmp_path)
    monkeypatch.setattr(meaning, "_DEFAULT", None)
    monkeypatch.setattr(meaning, "_LOOKED", False)
    monkeypatch.setattr(meaning, "load_ginza", lambda p: (_ for _ in ()).throw(OSError("bad file")))
    with caplog.at_level("WARNING", logger="llmjp_ckpt.labels.meaning"):
        assert meaning.default_vectors() is None
    assert "cannot read ja-ginza vectors" in caplog.text


def test_null_cosine_is_a_property_of_the_table():
    import numpy as np

    rng = np.random.default_rng(0)
    wide = meaning.WordVectors(lambda f: None, rng.normal(size=(500, 300)))
    # random directions in 300 dimensions: cosine ~ N(0, 1/300), q95 ≈ 1.645 / sqrt(300)
    assert meaning.null_cosine(wide, pairs=20_000) == pytest.approx(1.645 / math.sqrt(300), abs=0.01)
    assert meaning.null_cosine(meaning.WordVectors.from_table({"a": [1.0]})) == 1.0


def test_vector_thresholds_are_off_a_priori_and_not_in_the_shipped_grid():
    p = RuleParams()
    assert not p.uses_vectors() and not RuleParams.load().uses_vectors()
    assert not set(evaluate.VEC_GRID) & set(evaluate.GRID)
    assert 1.0 in evaluate.VEC_GRID["sem_vec_min"] and 0.0 in evaluate.VEC_GRID["sem_vec_veto"]


def test_embedder_hook_relates_close_forms(vec):
    embed = meaning.embedder(vec)
    assert embed("猫") is not None and embed("zz") is None
    ex = build_examples(["猫"] * 6 + ["犬"] * 4)
    st = token_stats(ex, embed=embed)
    assert st.cluster == 1.0 and st.variant == pytest.approx(0.4)


def test_empty_table_has_no_rows():
    empty = meaning.WordVectors.from_table({})
    assert empty.row("猫") is None and meaning.vector_stats([("猫",)], empty) == (0.0, 0)


def test_ablation_reports_the_vector_rows(vec):
    from tests.labels.test_batch import synthetic_records

    recs = synthetic_records()
    with_vec = evaluate.ablation(recs, None, vec)
    assert "strict + word vectors, prior sem_vec_min" in with_vec and "synonym relation" in with_vec
    assert "word vectors: skipped" in evaluate.ablation(recs, None, None)
