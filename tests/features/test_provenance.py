"""Every derived artefact records the SAE weights it came from, and a retrained SAE (same id,
new weights) invalidates its top-N store, its rows and labels, its matches and its pages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features import FeaturesConfig, FeatureStore, analyze_run
from llmjp_ckpt.runfolder import RunFolder
from llmjp_ckpt.saes.dead import weights_hash
from tests.feature_builders import build_model, build_run, build_sae, build_token_text

CFG = FeaturesConfig(n_top=4, batch_size=8, norm_windows=8, png=False)


def _retrain(folder: Path, seed: int) -> None:
    """Replace the SAE in ``folder`` by another one of the same shape (a retrain, same id)."""
    build_sae(seed=seed, token_norm=folder.name, model_name="tiny").save_model(str(folder))


def test_retrained_sae_invalidates_its_store_and_rows(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    loads: list[int] = []

    def loader(step: int):
        loads.append(step)
        return build_model(seed=step)

    out = analyze_run(run, CFG, model_loader=loader, token_text=build_token_text())
    stores = {p.parent.name + "/" + p.name: p for p in sorted((run / "features").glob("iter_*/*"))}
    before = {k: FeatureStore.load(p) for k, p in stores.items()}
    mtimes = {k: (p / "topn.safetensors").stat().st_mtime_ns for k, p in stores.items()}
    df = pd.read_parquet(out)
    for key, st in before.items():  # the store and its rows record the SAE's weights
        h = weights_hash(run / "saes" / key)
        assert st.meta["sae_weights_hash"] == h
        step, sid = int(key.split("/")[0].removeprefix("iter_")), key.split("/")[1]
        assert set(df[(df.checkpoint == step) & (df.sae_id == sid)]["sae_weights_hash"]) == {h}

    target = run / "saes" / "iter_0000100" / "scalar"
    old = weights_hash(target)
    _retrain(target, seed=99)
    new = weights_hash(target)
    assert new != old
    analyze_run(run, CFG, model_loader=loader, token_text=build_token_text())  # no --force
    assert loads == [10, 100, 10, 100]  # the stage reran
    after = FeatureStore.load(stores["iter_0000100/scalar"])
    assert after.meta["sae_weights_hash"] == new
    assert not (after.t["top_windows"] == before["iter_0000100/scalar"].t["top_windows"]).all()
    for key, p in stores.items():  # only the retrained SAE's store was recomputed
        changed = (p / "topn.safetensors").stat().st_mtime_ns != mtimes[key]
        assert changed == (key == "iter_0000100/scalar"), key
    df = pd.read_parquet(out)
    rows = df[(df.checkpoint == 100) & (df.sae_id == "scalar")]
    assert set(rows["sae_weights_hash"]) == {new}
    freq = rows.sort_values("feature")["frequency"].tolist()
    assert freq == pytest.approx(after.frequency.tolist())
    assert RunFolder(run).stage_record("features")["config"]["sae_weights_hashes"][
        "iter_0000100/scalar"] == new
    # the confusion of the thresholds in use, for the compare stage's share intervals
    from llmjp_ckpt.labels.uncertainty import load_confusion

    assert RunFolder(run).stage_record("features")["granularity_confusion"] == load_confusion()


def test_compare_and_site_record_hashes_and_rerun_on_a_retrain(tmp_path: Path) -> None:
    from llmjp_ckpt.compare import CompareConfig, compare_run
    from llmjp_ckpt.saes.dead import write_firing_counts
    from llmjp_ckpt.site import SiteConfig, build_site

    run = build_run(tmp_path / "run")
    analyze_run(run, CFG, model_loader=lambda s: build_model(seed=s), token_text=build_token_text())
    res = compare_run(run, CompareConfig(png=False))
    fam = res["families"]["scalar"]
    target = run / "saes" / "iter_0000100" / "scalar"
    assert fam["sae_weights_hash"]["100"] == weights_hash(target)
    assert fam["pairs"][0]["sae_weights_hash"]["to"] == weights_hash(target)
    site_cfg = SiteConfig(feature_pages=False)
    build_site(run, site_cfg, token_text=build_token_text())
    assert weights_hash(target) in (run / "dashboards" / "browser" /
                                    "iter_0000100__scalar.html").read_text(encoding="utf-8")

    _retrain(target, seed=99)
    write_firing_counts(target, [1] * 64, n_tokens=1000)
    # compare and the site refuse rows and examples computed from the old weights, in one line
    with pytest.raises(UserError, match=r"rows of .*scalar have sae_weights_hash .*rerun `llmjp"):
        compare_run(run, CompareConfig(png=False))
    with pytest.raises(UserError, match=r"sae_weights_hash .*rerun `llmjp-ckpt features`"):
        build_site(run, site_cfg, token_text=build_token_text())
    # once the features stage has caught up, compare reruns (new hash) and the site builds
    analyze_run(run, CFG, model_loader=lambda s: build_model(seed=s), token_text=build_token_text())
    res = compare_run(run, CompareConfig(png=False))
    assert "skipped" not in res
    assert res["families"]["scalar"]["sae_weights_hash"]["100"] == weights_hash(target)
    build_site(run, site_cfg, token_text=build_token_text())
