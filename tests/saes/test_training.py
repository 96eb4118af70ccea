"""SAE training through SAELens on tiny checkpoints: layout, metrics, skip, resume, bad input."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt import demo
from llmjp_ckpt.data import corpus
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.saes import training
from llmjp_ckpt.saes.config import TrainConfig
from llmjp_ckpt.saes.metrics import KEYS
from tests.helpers import build_corpus, data_config, train_config
from tests.model_builders import build_checkpoints, build_tokenizer

REPO = Path(__file__).resolve().parents[2]
STEPS = [10, 20]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("world")
    tok = build_tokenizer(root / "tok")
    tok.save_pretrained(root / "tok")
    build_checkpoints(root / "ckpts", STEPS, tok)
    build_corpus(root / "corpus", n_docs={"ja": 160, "en": 160})
    run = root / "run"
    corpus.prepare_data(data_config(root / "corpus", root / "tok", token_budget=64 * 100_000), run)
    return {"root": root, "tok": root / "tok", "ckpts": root / "ckpts", "run": run}


@pytest.fixture(scope="module")
def trained(world) -> list[Path]:
    torch.manual_seed(0)
    return training.train_run(train_config(world["ckpts"], STEPS), world["run"])


def fresh_run(world, tmp_path: Path) -> Path:
    """A run folder sharing the prepared data (copied: tiny)."""
    import shutil

    shutil.copytree(world["run"] / "data", tmp_path / "run" / "data")
    return tmp_path / "run"


def test_every_checkpoint_and_normalisation_has_a_complete_sae(trained, world):
    assert len(trained) == len(STEPS) * 3
    for step in STEPS:
        for norm in ("none", "scalar", "standardization"):
            d = world["run"] / "saes" / f"iter_{step:07d}" / f"x4_k4_lr0.003_{norm}"
            for name in (
                "cfg.json",
                "sae_weights.safetensors",
                "sparsity.safetensors",
                "runner_cfg.json",
                "metrics.json",
            ):
                assert (d / name).is_file(), d / name
            meta = json.loads((d / "cfg.json").read_text())["metadata"]
            assert meta["checkpoint_step"] == step and meta["normalisation"] == norm
            assert meta["hook_name"] == "blocks.1.hook_resid_post" and meta["context_size"] == 65
            assert meta["model_name"] == str(world["ckpts"]) and meta["data_path"].endswith("data")
            assert meta["seqpos_slice"] == [1, None] and meta["disable_concat_sequences"] is True
    assert not (world["run"] / "saes" / "_work").exists()


def test_metrics_json_complete(trained):
    for d in trained:
        m = json.loads((d / "metrics.json").read_text())
        for key in KEYS:
            assert m[key] is not None and m[key] == m[key], (d, key)
        assert set(m["by_language"]) == {"ja", "en"}
        for lang in ("ja", "en"):
            assert all(m["by_language"][lang][key] is not None for key in KEYS)
        assert abs(m["fvu"] - (1 - m["explained_variance"])) < 1e-9
        assert 0 < m["l0"] <= m["k"]
        assert 0 <= m["dead_fraction"] <= 1


def test_loads_with_sae_lens_and_at_most_k_active(trained, world):
    from sae_lens import SAE

    from llmjp_ckpt.models.adapter import load_model

    model = load_model(str(world["ckpts"]), 10)
    val = corpus.load_split(world["run"], "val")
    tokens = torch.tensor(val[:8]["input_ids"])
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_post"])
    x = cache["blocks.1.hook_resid_post"][:, 1:]
    for d in trained[:3]:
        sae = SAE.load_from_disk(d)
        feats = sae.encode(x)
        assert int((feats != 0).sum(-1).max()) <= sae.cfg.k
        assert sae.decode(feats).shape == x.shape


def test_normalisations_give_different_saes(trained):
    from safetensors.torch import load_file

    by_norm = {json.loads((d / "cfg.json").read_text())["normalisation"]: d for d in trained[:3]}
    w = {n: load_file(str(d / "sae_weights.safetensors"))["W_enc"] for n, d in by_norm.items()}
    m = {n: json.loads((d / "metrics.json").read_text()) for n, d in by_norm.items()}
    for n in ("scalar", "standardization"):
        assert not torch.allclose(w[n], w["none"], atol=1e-3)
        assert m[n]["mse"] != pytest.approx(m["none"]["mse"], rel=1e-3)


def test_rerun_skips_finished_and_changed_config_retrains(trained, world):
    d = trained[0]
    before = (d / "cfg.json").stat().st_mtime_ns
    again = training.train_run(train_config(world["ckpts"], STEPS), world["run"])
    assert sorted(again) == sorted(trained)
    assert (d / "cfg.json").stat().st_mtime_ns == before
    cfg = train_config(world["ckpts"], [10], saes={"normalisation": ["none"]}, runner={"training_tokens": 256 * 8})
    training.train_run(cfg, world["run"])
    assert (d / "cfg.json").stat().st_mtime_ns != before  # x4_k4_lr0.003_none at step 10: retrained
    assert (trained[1] / "cfg.json").stat().st_mtime_ns < (d / "cfg.json").stat().st_mtime_ns


@pytest.mark.slow
def test_warm_start_initialises_from_previous_checkpoint(world, tmp_path, monkeypatch):
    run = fresh_run(world, tmp_path)
    cfg = train_config(world["ckpts"], STEPS, saes={"normalisation": ["scalar"]}, warm_start=True)
    seen = []
    real = training._warm_saes

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out)
        return out

    monkeypatch.setattr(training, "_warm_saes", spy)
    out = training.train_run(cfg, run)
    assert seen[0] is None and seen[1] is not None
    meta = json.loads((out[1] / "cfg.json").read_text())["metadata"]
    assert meta["warm_start_from"] == 10


@pytest.mark.slow
def test_grid_report(world, tmp_path):
    from llmjp_ckpt.saes.grid import write_report

    run = fresh_run(world, tmp_path)
    cfg = train_config(
        world["ckpts"],
        [20],
        saes={"expansion": [2, 4], "k": [2, 4], "lr": [1e-3, 3e-3], "normalisation": ["scalar"]},
        metrics={"ce": False, "max_windows": 16},
        runner={"training_tokens": 256 * 4},
        max_saes_per_pass=2,
    )
    training.train_run(cfg, run)
    html = write_report(run)
    text = html.read_text()
    assert "FVU" in text and "dead fraction" in text and "plotly" in text.lower()
    import pandas as pd

    best = pd.read_csv(run / "analysis" / "grid" / "best.csv")
    assert len(best) == 4 and len(pd.read_csv(run / "analysis" / "grid" / "grid.csv")) == 8


# ---- crash and resume ------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_then_rerun_resumes_from_last_checkpoint(world, tmp_path):
    run = fresh_run(world, tmp_path)
    cfg = train_config(world["ckpts"], [10], saes={"normalisation": ["scalar"]},
                       runner={"training_tokens": 256 * 200, "n_checkpoints": 10}, metrics={"max_windows": 8})
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg))
    code = ("import json,sys,torch; torch.set_num_threads(1); from llmjp_ckpt.saes.training import train_run;"
            "train_run(json.load(open(sys.argv[1])), sys.argv[2])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg_file), str(run)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = run / "saes" / "_work"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if training.latest_checkpoint(next(work.glob("*/*"), work), ["x4_k4_lr0.003_scalar"]) is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    final = run / "saes" / "iter_0000010" / "x4_k4_lr0.003_scalar"
    assert not final.exists()  # nothing under the final name
    out = training.train_run(cfg, run)
    m = json.loads((out[0] / "metrics.json").read_text())
    assert m["resumed_from"] is not None and "checkpoints" in m["resumed_from"]
    assert not work.exists()


# ---- bad input -------------------------------------------------------------------------------

def test_unknown_yaml_fields(tmp_path, world):
    import yaml

    for bad, field in (
        ({"hook_layerr": 2}, "hook_layerr"),
        ({"runner": {"train_batch_size_tokenz": 5}}, "train_batch_size_tokenz"),
        ({"runner": {"context_size": 5}}, "context_size"),
    ):
        cfg = train_config(world["ckpts"], STEPS) | bad
        if "runner" in bad:
            cfg["runner"] = {**train_config(world["ckpts"], STEPS)["runner"], **bad["runner"]}
        p = tmp_path / "t.yaml"
        p.write_text(yaml.safe_dump(cfg))
        with pytest.raises(UserError, match=field):
            TrainConfig.from_yaml(p)


@pytest.mark.parametrize("override, match", [
    ({"saes": {"lr": [0.0]}}, r"saes.lr=0.0: expected a learning rate > 0"),
    ({"saes": {"lr": [-1e-3]}}, r"expected a learning rate > 0"),
    ({"saes": {"normalisation": ["l2"]}}, r"expected one of none, scalar, standardization"),
])
def test_bad_values_rejected_at_load(world, override, match):
    with pytest.raises(UserError, match=match):
        TrainConfig.from_dict(train_config(world["ckpts"], STEPS, **override))


def test_k_larger_than_d_sae(world, tmp_path):
    run = fresh_run(world, tmp_path)
    with pytest.raises(UserError, match=r"saes.k=999 > d_sae=256"):
        training.train_run(train_config(world["ckpts"], [10], saes={"k": [999]}), run)
    assert not (run / "saes" / "iter_0000010").exists()


def test_checkpoint_missing(world, tmp_path):
    run = fresh_run(world, tmp_path)
    with pytest.raises(UserError, match="999"):
        training.train_run(train_config(world["ckpts"], [999]), run)


def test_hook_layer_out_of_range(world, tmp_path):
    run = fresh_run(world, tmp_path)
    with pytest.raises(UserError, match=r"layer 5 is out of range: expected 1..2"):
        training.train_run(train_config(world["ckpts"], [10], hook_layer=5), run)


def test_data_not_prepared(world, tmp_path):
    with pytest.raises(UserError, match="prepare-data"):
        training.train_run(train_config(world["ckpts"], [10]), tmp_path / "empty")


def test_nan_activations_stop_training(world, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    ckpts = tmp_path / "ckpts"
    shutil.copytree(world["ckpts"] / "iter_0000010", ckpts / "iter_0000010")
    weights = ckpts / "iter_0000010" / "model.safetensors"
    sd = load_file(str(weights))
    sd["model.embed_tokens.weight"][5:200] = float("nan")
    save_file(sd, str(weights), metadata={"format": "pt"})
    run = fresh_run(world, tmp_path)
    with pytest.raises(UserError, match=r"\d+ NaN/inf activation values .* training stopped"):
        training.train_run(train_config(ckpts, [10], saes={"normalisation": ["scalar"]}), run)
    assert not (run / "saes" / "iter_0000010").exists()


def test_disk_full_during_save_leaves_no_complete_folder(world, tmp_path, monkeypatch):
    import sae_lens.saes.sae as sae_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sae_module, "save_file", full)
    run = fresh_run(world, tmp_path)
    cfg = train_config(world["ckpts"], [10], saes={"normalisation": ["scalar"]}, runner={"n_checkpoints": 0})
    with pytest.raises(UserError, match="no space left on device"):
        training.train_run(cfg, run)
    assert not (run / "saes" / "iter_0000010").exists()
    from llmjp_ckpt.runfolder import RunFolder

    assert RunFolder(run).stage_record("train")["status"] == "failed"


def test_cli_train_bad_config_exit_2(tmp_path, capsys):
    from llmjp_ckpt.cli import main

    p = tmp_path / "t.yaml"
    p.write_text("model: {source: x}\nsaes: {lr: [-1]}\nrunner: {training_tokens: 10}\n")
    assert main(["train", "--config", str(p), "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "saes.lr=-1" in err and len(err.strip().splitlines()) == 1


def test_saelens_store_sees_65_token_windows_and_trains_64_positions(world):
    """The windows reach SAELens as prepared: one BOS first, none added, BOS position sliced off."""
    import datasets
    from sae_lens.training.activations_store import ActivationsStore

    from llmjp_ckpt.models.adapter import load_model

    model = load_model(str(world["ckpts"]), 10)
    hook = "blocks.1.hook_resid_post"
    ds = datasets.load_from_disk(str(world["run"] / "data" / "train")).select_columns(["input_ids"])
    store = ActivationsStore.from_config_multi_hook(
        model=model,
        dataset=ds,
        hook_names=[hook],
        hook_d_ins={hook: model.cfg.d_model},
        hook_head_indices={hook: None},
        streaming=False,
        context_size=training.CONTEXT_SIZE,
        n_batches_in_buffer=2,
        total_training_tokens=10_000,
        store_batch_size_prompts=4,
        train_batch_size_tokens=128,
        prepend_bos=True,
        normalize_activations="none",
        device=torch.device("cpu"),
        dtype="float32",
        model_kwargs={},
        autocast_lm=False,
        dataset_trust_remote_code=False,
        seqpos_slice=training.SEQPOS_SLICE,
        exclude_special_tokens=None,
        disable_concat_sequences=True,
        sequence_separator_token=None,
        activations_mixing_fraction=0.5,
        use_chat_formatting=False,
    )
    tokens = store.get_batch_tokens(4)
    bos = model.tokenizer.bos_token_id
    assert tokens.shape == (4, 65)
    assert (tokens[:, 0] == bos).all() and not (tokens[:, 1:] == bos).any()
    assert tokens.tolist() == [list(map(int, r)) for r in ds[:4]["input_ids"]]
    assert store.get_activations(tokens).shape == (4, 64, model.cfg.d_model)


@pytest.mark.slow
def test_demo_on_the_toy_world(toy_dir, tmp_path):
    """Data + SAEs for every toy checkpoint with each normalisation, from configs/demo (quick)."""
    from sae_lens import SAE

    data_cfg, train_cfg = demo.demo_configs(toy_dir, quick=True)
    run = tmp_path / "run"
    corpus.prepare_data(data_cfg, run)
    out = training.train_run(train_cfg, run)
    steps = json.loads((toy_dir / "toy.json").read_text())["steps"]
    assert len(out) == 3 * len(steps)
    for d in out:
        m = json.loads((d / "metrics.json").read_text())
        assert all(m[k] is not None for k in KEYS) and set(m["by_language"]) == {"ja", "en"}
        sae = SAE.load_from_disk(d)
        assert sae.cfg.metadata.checkpoint_step in steps and sae.cfg.normalisation == m["token_norm"]


@pytest.mark.slow
def test_toy_grid_through_the_grid_config_and_cli(toy_dir, tmp_path):
    """configs/grid/toy_grid.yaml (3 expansions x 3 K x 2 lr) on the toy, via `llmjp-ckpt train --report`."""
    import yaml

    from llmjp_ckpt.cli import main

    data_cfg, _ = demo.demo_configs(toy_dir, quick=True)
    run = tmp_path / "run"
    corpus.prepare_data(data_cfg, run)
    cfg = yaml.safe_load((REPO / "configs" / "grid" / "toy_grid.yaml").read_text())
    cfg["model"]["checkpoint_root"] = str(toy_dir / "checkpoints")
    cfg["hook_layer"] = json.loads((toy_dir / "toy.json").read_text())["layer"]
    p = tmp_path / "grid.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(p), "--run", str(run), "--report"]) == 0
    import pandas as pd

    grid = pd.read_csv(run / "analysis" / "grid" / "grid.csv")
    best = pd.read_csv(run / "analysis" / "grid" / "best.csv")
    assert len(grid) == 18 and len(best) == 9
    assert set(grid["checkpoint_step"]) == {json.loads((toy_dir / "toy.json").read_text())["steps"][-1]}
    html = (run / "analysis" / "grid" / "grid_report.html").read_text()
    assert html.count("FVU (best lr)") == 1 and "<table" in html


# ---- seeds, dead latents, configs (issue 11) -------------------------------------------------

def _weights(folder: Path) -> bytes:
    return (folder / "sae_weights.safetensors").read_bytes()


def test_same_seed_bit_identical_weights_other_seed_different(world, tmp_path):
    opts = {"b_dec_init": "geometric_median", "b_dec_init_tokens": 512, "tied_encoder_init": True}
    out = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run = fresh_run(world, tmp_path / name)
        cfg = train_config(world["ckpts"], [10], saes={"normalisation": ["scalar"]}, seed=seed,
                           sae_options=opts, metrics={"max_windows": 4, "ce": False})
        torch.manual_seed(1000 + ord(name))  # the global state before training must not matter
        out[name] = training.train_run(cfg, run)[0]
    assert _weights(out["a"]) == _weights(out["b"])
    assert _weights(out["a"]) != _weights(out["c"])
    meta = json.loads((out["a"] / "cfg.json").read_text())["metadata"]
    assert meta["seed"] == 7 and meta["b_dec_init"] == "geometric_median"
    assert meta["tied_encoder_init"] is True
    cfg7 = TrainConfig.from_dict(cfg | {"seed": 7})
    assert meta["init_seed"] == training.init_seed(cfg7, 10, "x4_k4_lr0.003_scalar")
    from llmjp_ckpt.runfolder import RunFolder

    rec = RunFolder(tmp_path / "a" / "run").stage_record("train")
    assert rec["config"]["config"]["seed"] == 7 and rec["seed"] == 7
    assert json.loads((out["a"] / "runner_cfg.json").read_text())["seed"] == 7


def test_one_checkpoint_retrained_alone_equals_the_full_run(trained, world, tmp_path):
    run = fresh_run(world, tmp_path)
    alone = training.train_run(train_config(world["ckpts"], [20]), run)
    full = {d.name: d for d in trained if d.parent.name == "iter_0000020"}
    assert len(alone) == 3
    for d in alone:
        assert _weights(d) == _weights(full[d.name]), d.name


def test_firing_counts_written_and_dead_fraction_from_them(trained):
    from llmjp_ckpt.saes import dead

    for d in trained:
        counts, n = dead.firing_counts(d)
        m = json.loads((d / "metrics.json").read_text())
        val_tokens = 64 * len(corpus.load_split(d.parents[2], "val"))
        assert n == m["dead_eval_tokens"] == min(2**20, val_tokens)  # the default, capped
        assert m["dead_count"] == dead.dead_count(d) == int((counts == 0).sum())
        assert m["dead_fraction"] == pytest.approx(m["dead_count"] / m["d_sae"])
        assert counts.shape == (m["d_sae"],) and counts.max() <= n


@pytest.mark.parametrize("runner, match", [
    ({"dead_feature_window": 12},
     r"runner.dead_feature_window=12: expected 1 <= window < the run's 12 steps"),
    ({"dead_feature_window": 50}, r"dead_feature_window=50"),
    ({"seed": 3}, r"runner.seed: .*top-level seed"),
])
def test_bad_runner_fields_refused_at_load(world, runner, match):
    with pytest.raises(UserError, match=match) as exc:
        TrainConfig.from_dict(train_config(world["ckpts"], STEPS, runner=runner))
    assert "\n" not in str(exc.value)


def test_default_dead_feature_window_longer_than_the_run_is_refused(world):
    cfg = train_config(world["ckpts"], STEPS)
    del cfg["runner"]["dead_feature_window"]  # SAELens' default: 1000 steps, the run has 12
    with pytest.raises(UserError, match=r"dead_feature_window=1000"):
        TrainConfig.from_dict(cfg)


@pytest.mark.parametrize("name", ["paper/sae.yaml", "paper/sae_warm_start.yaml",
                                  "grid/paper_grid.yaml", "grid/toy_grid.yaml", "demo/train.yaml",
                                  "demo/train_quick.yaml"])
def test_shipped_train_configs_load(name):
    cfg = TrainConfig.from_yaml(REPO / "configs" / name)
    r = cfg.runner_fields()
    assert r["dead_feature_window"] < r["training_tokens"] // r["train_batch_size_tokens"]


def test_paper_config_uses_the_studys_initialisation():
    cfg = TrainConfig.from_yaml(REPO / "configs" / "paper" / "sae.yaml")
    assert cfg.sae_options["b_dec_init"] == "geometric_median"
    assert cfg.sae_options["tied_encoder_init"] is True
    assert cfg.seed == 42 and "seed" not in cfg.runner


def test_warm_start_config_differs_from_the_paper_config_only_in_warm_start():
    from dataclasses import asdict

    from llmjp_ckpt.config import read_yaml

    paper = read_yaml(REPO / "configs" / "paper" / "sae.yaml")
    warm = read_yaml(REPO / "configs" / "paper" / "sae_warm_start.yaml")
    assert paper.pop("warm_start") is False and warm.pop("warm_start") is True
    assert paper == warm
    a = asdict(TrainConfig.from_yaml(REPO / "configs" / "paper" / "sae.yaml"))
    b = asdict(TrainConfig.from_yaml(REPO / "configs" / "paper" / "sae_warm_start.yaml"))
    assert {k for k in a if a[k] != b[k]} == {"warm_start"}
