"""Top-N collection against a naive reference that sorts all activations, and the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.store import META, TENSORS, FeatureStore, save_store
from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder
from tests.feature_builders import HOOK, build_model, build_sae, build_windows


def naive_topn(acts: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort every window's max for every latent (stable: the earlier window wins ties)."""
    wmax = acts.amax(1)  # [W, F]
    order = torch.sort(wmax.T, dim=1, descending=True, stable=True)
    vals, wins = order.values[:, :n], order.indices[:, :n].clone()
    wins[vals <= 0] = -1
    return torch.where(vals > 0, vals, 0.0), wins


def check_against_reference(res, acts: torch.Tensor, n: int) -> None:
    ref_vals, ref_wins = naive_topn(acts, n)
    assert torch.equal(res.top_windows, ref_wins)
    assert torch.equal(res.top_values, ref_vals)
    f_idx, slot = (ref_wins >= 0).nonzero(as_tuple=True)
    expected = acts[ref_wins[f_idx, slot], :, f_idx].half()
    assert torch.equal(res.top_token_acts[f_idx, slot], expected)
    assert not res.top_token_acts[ref_wins < 0].any()
    fired = acts > 0
    assert torch.equal(res.fire_count, fired.sum((0, 1)))
    assert torch.allclose(res.frequency, fired.double().mean((0, 1)))
    assert torch.equal(res.max_activation, acts.amax((0, 1)).clamp(min=0))
    mean = (acts * fired).double().sum((0, 1)) / fired.sum((0, 1)).clamp(min=1)
    assert torch.allclose(res.mean_activation, mean)


def test_synthetic_with_ties_and_dead_latents() -> None:
    g = torch.Generator().manual_seed(1)
    w, t, f = 53, 6, 20
    acts = torch.relu(torch.randn(w, t, f, generator=g))
    acts = (acts * 4).round() / 4  # many exact ties
    acts[:, :, 3] = 0.0  # a dead latent
    acts[:, :, 7] = 0.0
    acts[11, 2, 7] = 1.5  # fires once
    tokens = torch.zeros(w, t + 1, dtype=torch.long)
    tokens[:, 0] = torch.arange(w)  # the fake encoder reads the window id from column 0
    cfg = TopNConfig(n_top=8, batch_size=7)
    res = collect_topn(tokens, lambda b: {"a": acts[b[:, 0]]}, {"a": f}, cfg)["a"]
    check_against_reference(res, acts, 8)
    assert (res.top_windows[3] == -1).all()
    assert res.top_windows[7].tolist() == [11] + [-1] * 7


def test_model_and_two_saes_match_reference() -> None:
    model = build_model()
    saes = {"s1": build_sae(seed=1), "s2": build_sae(d_sae=48, k=3, hook="blocks.1.hook_resid_post", seed=2)}
    toks = build_windows(n=30)
    enc = model_encoder(model, saes)
    cfg = TopNConfig(n_top=5, batch_size=8)
    res = collect_topn(toks, enc, {k: s.cfg.d_sae for k, s in saes.items()}, cfg)
    for name, sae in saes.items():
        full = torch.cat([enc(toks[i : i + 8])[name] for i in range(0, len(toks), 8)])
        assert full.shape == (30, 16, sae.cfg.d_sae)  # BOS position dropped
        check_against_reference(res[name], full, 5)
    # the encoder equals a direct run_with_cache + SAE.encode on the hooked layer
    _, cache = model.run_with_cache(toks[:3], names_filter=HOOK)
    assert torch.allclose(enc(toks[:3])["s1"], saes["s1"].encode(cache[HOOK][:, 1:]))


def test_store_round_trip_and_examples(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    acts = torch.relu(torch.randn(12, 4, 5, generator=g))
    acts[:, :, 4] = 0
    tokens = torch.cat([torch.arange(12)[:, None], torch.randint(3, 50, (12, 4), generator=g)], 1)
    cfg = TopNConfig(n_top=3, batch_size=5)
    res = collect_topn(tokens, lambda b: {"x": acts[b[:, 0]]}, {"x": 5}, cfg)["x"]
    save_store(tmp_path / "s", res, tokens, {"step": 10, "sae_id": "x"})
    st = FeatureStore.load(tmp_path / "s")
    assert torch.equal(st.t["top_windows"], res.top_windows)
    assert torch.allclose(st.frequency, res.frequency)
    ex = st.examples(0)
    assert len(ex) == 3 and all(len(wdw) == 4 for wdw in ex)
    w0 = int(res.top_windows[0, 0])
    assert [tok for tok, _ in ex[0]] == [f"<id {i}>" for i in tokens[w0, 1:].tolist()]
    assert max(v for _, v in ex[0]) == pytest.approx(float(res.top_values[0, 0]), rel=1e-3)
    assert st.examples(4) == []
    with pytest.raises(UserError, match="feature 5"):
        st.examples(5)


def test_bad_store_files(tmp_path: Path) -> None:
    acts = torch.relu(torch.randn(4, 3, 2))
    tokens = torch.cat([torch.arange(4)[:, None], torch.ones(4, 3, dtype=torch.long)], 1)
    res = collect_topn(tokens, lambda b: {"x": acts[b[:, 0]]}, {"x": 2},
                       TopNConfig(n_top=2, batch_size=2))["x"]
    folder = save_store(tmp_path / "s", res, tokens, {})
    with pytest.raises(UserError, match="missing"):
        FeatureStore.load(tmp_path / "nowhere")
    meta = json.loads((folder / META).read_text())
    (folder / META).write_text(json.dumps({k: v for k, v in meta.items() if k != "schema"}))
    with pytest.raises(UserError, match="'schema'"):
        FeatureStore.load(folder)
    (folder / META).write_text("{not json")
    with pytest.raises(UserError, match="JSON"):
        FeatureStore.load(folder)
    (folder / META).write_text(json.dumps(meta))
    from safetensors.torch import load_file, save_file

    t = load_file(str(folder / TENSORS))
    save_file({k: v for k, v in t.items() if k != "window_tokens"}, str(folder / TENSORS))
    with pytest.raises(UserError, match="'window_tokens' missing"):
        FeatureStore.load(folder)
    (folder / TENSORS).write_bytes(b"garbage")
    with pytest.raises(UserError, match="unreadable"):
        FeatureStore.load(folder)
    with pytest.raises(UserError, match="n_windows > 0"):
        collect_topn(torch.zeros(0, 4, dtype=torch.long), lambda b: {}, {"x": 2})


def test_analyze_run_end_to_end(tmp_path: Path) -> None:
    import pandas as pd

    from llmjp_ckpt.cli import main as cli_main
    from llmjp_ckpt.features import COLUMNS, FeaturesConfig, analyze_run
    from llmjp_ckpt.runfolder import RunFolder
    from tests.feature_builders import build_run, build_token_text

    run = build_run(tmp_path / "run")
    loads: list[int] = []

    def loader(step: int):
        loads.append(step)
        return build_model(seed=step)

    cfg = FeaturesConfig(n_top=4, batch_size=8, norm_windows=8, png=False)
    out = analyze_run(run, cfg, model_loader=loader, token_text=build_token_text())
    df = pd.read_parquet(out)
    assert list(df.columns) == COLUMNS
    assert len(df) == 2 * 2 * 64 and set(df["checkpoint"]) == {10, 100}
    assert set(df["sae_id"]) == {"none", "scalar"} and loads == [10, 100]
    st = FeatureStore.load(run / "features" / "iter_0000100" / "scalar")
    part = df[(df.checkpoint == 100) & (df.sae_id == "scalar")].sort_values("feature")
    assert part["frequency"].tolist() == pytest.approx(st.frequency.tolist())
    assert st.meta["hook_name"] == HOOK and st.meta["n_windows"] == 24
    ex = st.examples(int(part.frequency.idxmax() % 64), build_token_text())
    assert ex and all(isinstance(t, str) and isinstance(v, float) for w in ex for t, v in w)
    live = part[part.frequency > 0]
    try:
        import llmjp_ckpt.labels.language  # noqa: F401
    except ImportError:
        assert live["language_paper"].isna().all()
    else:
        assert set(live["language_paper"]) <= {"en", "ja", "mix"} and live["language_paper"].notna().all()
        assert set(live["language_script"]) <= {"en", "ja", "mix"}
    assert part[part.frequency == 0]["language_paper"].isna().all()
    figs = run / "analysis" / "figures"
    html = (figs / "features_frequency.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8"' in html and '<script src="http' not in html  # offline
    assert 'src="plotly.min.js"' in html and (figs / "plotly.min.js").is_file()  # plotly.js once
    assert (figs / "norms_by_token_type.html").exists()
    assert RunFolder(run).stage_record("features")["status"] == "done"
    # rerun: recorded done with the same config -> skipped (no model loaded)
    mtime = out.stat().st_mtime_ns
    analyze_run(run, cfg, model_loader=loader)
    assert loads == [10, 100] and out.stat().st_mtime_ns == mtime
    # a new checkpoint's SAE makes the stage run again; the finished stores are reused
    import shutil

    shutil.copytree(run / "saes" / "iter_0000100", run / "saes" / "iter_0000200")
    analyze_run(run, cfg, model_loader=loader)
    assert loads == [10, 100, 10, 100, 200]
    assert len(pd.read_parquet(out)) == 3 * 2 * 64
    assert (run / "features" / "iter_0000200" / "scalar" / "topn.safetensors").exists()
    # the CLI reports a missing run folder's pieces as one line, exit 2
    assert cli_main(["features", "--run", str(tmp_path / "empty")]) == 2


def test_examples_keep_byte_pieces_html_and_controls_verbatim(tmp_path: Path) -> None:
    """Store examples are data in the study's format: nothing decoded, nothing escaped here
    (pages escape when rendering); ids past the tokenizer are named, not dropped."""
    from llmjp_ckpt.tokens import TokenText

    tt = TokenText(("<unk>", "<s>", "</s>", "<0xE3>", "▁<script>alert(1)</script>", "a\x07b", "京都"), bos_id=1)
    tokens = torch.tensor([[1, 3, 4, 5, 6, 9]])
    acts = torch.ones(1, 5, 2)
    res = collect_topn(tokens, lambda b: {"x": acts}, {"x": 2},
                       TopNConfig(n_top=1, batch_size=1))["x"]
    save_store(tmp_path / "s", res, tokens, {})
    ex = FeatureStore.load(tmp_path / "s").examples(0, tt)
    assert [t for t, _ in ex[0]] == ["<0xE3>", " <script>alert(1)</script>", "a\x07b", "京都", "<pad-id 9>"]


def test_features_config_yaml(tmp_path: Path) -> None:
    from llmjp_ckpt.features import FeaturesConfig

    repo_cfg = Path(__file__).resolve().parents[2] / "configs" / "features.yaml"
    assert FeaturesConfig.from_yaml(repo_cfg) == FeaturesConfig()
    bad = tmp_path / "f.yaml"
    bad.write_text("n_top: 5\nnot_a_field: 1\n", encoding="utf-8")
    with pytest.raises(UserError, match="not_a_field"):
        FeaturesConfig.from_yaml(bad)
    with pytest.raises(UserError, match="n_top=0"):
        FeaturesConfig(n_top=0)
