"""One definition of a dead latent (llmjp_ckpt.saes.dead): a planted SAE's dead count is exact
and the same in metrics.json, compare, the norm study and the site."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder, step_dir
from tests.feature_builders import build_model, build_planted_dead_run, build_token_text

DEAD = (0, 5, 9)
D_SAE = 16
STEPS = (10, 100)


def test_planted_dead_count_is_exact_and_equal_everywhere(tmp_path: Path) -> None:
    from llmjp_ckpt.compare import CompareConfig, compare_run
    from llmjp_ckpt.features import FeaturesConfig, analyze_run
    from llmjp_ckpt.saes.dead import alive_mask
    from llmjp_ckpt.site import SiteConfig, build_site

    run = build_planted_dead_run(tmp_path / "run", DEAD, STEPS, D_SAE)
    tt = build_token_text()
    analyze_run(run, FeaturesConfig(n_top=4, batch_size=8, norm_windows=8, png=False),
                model_loader=lambda s: build_model(seed=s), token_text=tt)
    transitions = compare_run(run, CompareConfig(png=False))
    index = build_site(run, SiteConfig(feature_pages=False), token_text=tt)
    norms = json.loads((run / "analysis" / "norms.json").read_text(encoding="utf-8"))
    site_dead = RunFolder(run).stage_record("site")["dead_latents"]
    html = index.read_text(encoding="utf-8")
    for step in STEPS:
        folder = run / "saes" / step_dir(step) / "none"
        assert sorted(int(i) for i in (~alive_mask(folder)).nonzero()[0]) == list(DEAD)  # exact
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        counts = {
            "metrics.json": round(metrics["dead_fraction"] * D_SAE),
            "compare": transitions["families"]["none"]["dead_latents"][str(step)],
            "norm study": next(r["dead"] for r in norms["dead_latents"] if r["checkpoint"] == step),
            "site": site_dead[f"{step_dir(step)}/none"],
        }
        assert counts == dict.fromkeys(counts, len(DEAD)), (step, counts)
        live = f"<td>{D_SAE - len(DEAD)} / {D_SAE}</td>"
        assert re.search(rf"{step_dir(step)}</td><td>none</td>.*?{live}", html)
    # compare's "alive" shares are over the same latents
    per = transitions["families"]["none"]["per_checkpoint"]["alive"]
    assert all(per[str(s)]["n"] == D_SAE - len(DEAD) for s in STEPS)


def test_sae_without_firing_counts_is_one_clear_line(tmp_path: Path) -> None:
    from llmjp_ckpt.compare import CompareConfig, compare_run
    from llmjp_ckpt.features import normstudy

    run = build_planted_dead_run(tmp_path / "run", DEAD, STEPS, D_SAE)
    (run / "saes" / step_dir(100) / "none" / "firing_counts.safetensors").unlink()  # an older run
    (run / "analysis").mkdir()
    import pandas as pd

    pd.DataFrame({"checkpoint": [10], "sae_id": ["none"], "feature": [0], "frequency": [0.0],
                  "language_paper": [None], "language_script": [None], "granularity": [None]}
                 ).to_parquet(run / "analysis" / "features.parquet")
    calls = (lambda: normstudy.dead_rows(run), lambda: compare_run(run, CompareConfig(png=False)))
    for call in calls:
        with pytest.raises(UserError, match=r"iter_0000100/none/firing_counts\.safetensors: "
                                            r"not found .*rerun `llmjp-ckpt train`") as err:
            call()
        assert "\n" not in str(err.value)
