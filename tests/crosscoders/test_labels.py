"""Crosscoder latents labelled per checkpoint: top-N store, label table, shares, figure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from llmjp_ckpt.crosscoders import labels as cc_labels
from llmjp_ckpt.crosscoders.analysis import load_crosscoder
from llmjp_ckpt.crosscoders.stage import crosscoder_run
from llmjp_ckpt.crosscoders.train import CrosscoderConfig
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.store import FeatureStore
from llmjp_ckpt.labels.assign import LABEL_COLUMNS, label_feature
from tests.feature_builders import HOOK, build_model, build_run, build_token_text

STEPS = (10, 100)
CFG = CrosscoderConfig(expansion=2, k=4, lr=3e-3, lr_warm_up_steps=1, training_tokens=2048,
                       batch_tokens=256, batch_windows=8, dead_feature_window=2, n_top=5)


def _run(root: Path) -> Path:
    run = build_run(root, steps=STEPS, sae_ids=("none",))
    shutil.copytree(run / "data" / "test", run / "data" / "train")
    return run


def _toy_concepts(run: Path) -> None:
    """A toy ``concepts.json`` naming two of build_token_text's pieces (猫 id 7, ▁cat id 4) as forms."""
    import json

    forms = [{"concept": "cat", "category": "animal", "language": lang, "form": form, "ids": [i],
              "ids_attached": [], "pieces": [piece], "pieces_attached": []}
             for lang, form, i, piece in (("ja", "猫", 7, "猫"), ("en", "cat", 4, "▁cat"))]
    (run / "toy").mkdir()
    (run / "toy" / "concepts.json").write_text(json.dumps({"forms": forms}), encoding="utf-8")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    run = _run(tmp_path_factory.mktemp("cc_labels") / "run")
    _toy_concepts(run)
    out = crosscoder_run(run, CFG, model_loader=lambda s: build_model(seed=s), token_text=build_token_text())
    return run, out


def test_one_row_per_checkpoint_and_latent_with_the_latents_labels(result):
    run, out = result
    df = pd.read_parquet(run / "analysis" / cc_labels.TABLE)
    d_sae = CFG.expansion * 32
    assert len(df) == len(STEPS) * d_sae and sorted(df["checkpoint"].unique()) == list(STEPS)
    by_step = {s: g.sort_values("feature").reset_index(drop=True) for s, g in df.groupby("checkpoint")}
    for col in LABEL_COLUMNS:  # a latent's labels do not depend on the checkpoint row
        pd.testing.assert_series_equal(by_step[10][col], by_step[100][col], check_names=False)
    # relative norms: each live latent's largest block is 1; present means >= the config's present
    rel = df.pivot(index="feature", columns="checkpoint", values="relative_norm")
    live = rel.max(axis=1) > 0
    assert live.sum() > 0 and (rel[live].max(axis=1) - 1.0).abs().max() < 1e-6
    assert ((df["relative_norm"] >= CFG.present) == df["present"]).all()
    assert out["labels"]["n_labelled"] == int(by_step[10]["language_paper"].notna().sum()) > 0


def test_labels_are_label_feature_on_the_store_examples(result):
    run, _ = result
    store = FeatureStore.load(run / "crosscoders" / CFG.sae_id / cc_labels.STORE)
    assert store.meta["steps"] == list(STEPS) and store.meta["hook_name"] == HOOK
    df = pd.read_parquet(run / "analysis" / cc_labels.TABLE)
    rows = df[df["checkpoint"] == STEPS[0]].set_index("feature")
    tt = build_token_text()
    live = [f for f in range(store.d_sae) if store.examples(f, tt)][:5]
    assert live
    for f in live:
        want = label_feature(store.examples(f, tt), backend=None)
        assert rows.loc[f, "language_paper"] == want["language_paper"]
        assert rows.loc[f, "language_script"] == want["language_script"]
        assert rows.loc[f, "granularity"] == want["granularity"]


def test_store_top_window_is_the_crosscoders_own_maximum(result):
    """Recompute one latent's activations by hand: per-model unit-normalised blocks, concatenated."""
    run, _ = result
    store = FeatureStore.load(run / "crosscoders" / CFG.sae_id / cc_labels.STORE)
    sae = load_crosscoder(run / "crosscoders" / CFG.sae_id)
    from llmjp_ckpt.features.analyze import load_test_tokens

    toks = load_test_tokens(run)
    blocks = []
    for s in STEPS:
        _, cache = build_model(seed=s).run_with_cache(toks, names_filter=HOOK)
        a = cache[HOOK][:, 1:]
        blocks.append(a / a.norm(dim=-1, keepdim=True))
    with torch.no_grad():
        acts = sae.encode(torch.cat(blocks, dim=-1))  # [windows, T, d_sae]
    f = int(store.t["top_values"][:, 0].argmax())
    assert float(store.t["top_values"][f, 0]) == pytest.approx(float(acts[..., f].max()), rel=1e-4)
    assert int(store.t["top_windows"][f, 0]) == int(acts[..., f].amax(1).argmax())


def test_shares_per_checkpoint_count_the_present_latents(result):
    run, out = result
    df = pd.read_parquet(run / "analysis" / cc_labels.TABLE)
    rows = {r["checkpoint"]: r for r in out["labels"]["per_checkpoint"]}
    assert sorted(rows) == list(STEPS)
    for step, r in rows.items():
        here = df[(df["checkpoint"] == step) & df["present"]]
        assert r["present"] == len(here)
        assert r["labelled"] == int(here["language_paper"].notna().sum())
        if r["labelled"]:
            lang = sum(v for k, v in r.items() if k.startswith("language_paper="))
            assert lang == pytest.approx(1.0)
            ja = (here["language_paper"] == "ja").sum() / r["labelled"]
            assert r.get("language_paper=ja", 0.0) == pytest.approx(ja)
    assert cc_labels.FIGURE in out["figures"]
    assert (run / "analysis" / "figures" / f"{cc_labels.FIGURE}.html").is_file()


def test_no_test_split_is_one_line_before_training(tmp_path):
    run = _run(tmp_path / "run")
    shutil.rmtree(run / "data" / "test")
    with pytest.raises(UserError, match=r"data/test: missing") as exc:
        crosscoder_run(run, CFG, model_loader=lambda s: build_model(seed=s))
    assert "\n" not in str(exc.value)
    assert not (run / "crosscoders").exists()
    out = crosscoder_run(run, CrosscoderConfig(**{**CFG.__dict__, "labels": False}),
                         model_loader=lambda s: build_model(seed=s))
    assert "labels" not in out and not (run / "analysis" / cc_labels.TABLE).exists()


def test_bad_label_fields_are_refused():
    with pytest.raises(UserError, match="n_top"):
        CrosscoderConfig(n_top=0)
    with pytest.raises(UserError, match="label_windows"):
        CrosscoderConfig(label_windows=0)


def test_site_crosscoder_section_shows_the_label_shares(result, tmp_path):
    from llmjp_ckpt import atomic
    from llmjp_ckpt.site.index_page import write_index

    run, out = result
    atomic.write_json(run / "analysis" / "crosscoder.json", out)
    site = tmp_path / "site"
    (site / "data").mkdir(parents=True)
    page = write_index(run, site, "t", [], [], [], [], "").read_text(encoding="utf-8")
    section = page[page.index("Lineages and crosscoder"):]
    assert "crosscoder.json" in section and "<th>language_paper=" in section
    first = out["labels"]["per_checkpoint"][0]
    assert f"<tr><td>{first['checkpoint']}</td><td>{first['present']}</td>" in section
    assert "births of translation features" in section and "crosscoder (first checkpoint present)" in section
    atomic.write_json(run / "analysis" / "crosscoder.json", {k: v for k, v in out.items() if k != "labels"})
    page = write_index(run, site, "t", [], [], [], [], "").read_text(encoding="utf-8")
    assert "<th>language_paper=" not in page


def test_toy_run_gets_the_planted_view_of_present_latents(result):
    run, out = result
    df = pd.read_parquet(run / "analysis" / cc_labels.TABLE)
    view = out["labels"]["planted"]
    assert sorted(view["checkpoints"], key=int) == [str(s) for s in STEPS]
    for s in STEPS:
        c = view["checkpoints"][str(s)]
        assert c["present_latents"] == int(df[(df["checkpoint"] == s) & df["present"]].shape[0])
        assert c["planted"] <= c["present_latents"]
    assert {"latents", "match_fraction"} <= set(view["births"])
