"""The memory planner: sizes, packing of the paper grid, the split step, measured peaks, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt import devices
from llmjp_ckpt.cli import main
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.saes import plan as P
from llmjp_ckpt.saes.config import SaeSpec, TrainConfig
from llmjp_ckpt.saes.training import spec_hash

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "configs" / "grid" / "paper_grid.yaml"
PAPER = REPO / "configs" / "paper" / "sae.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80GiB", 80 * 2**30),
        ("80GB", 80 * 10**9),
        ("141G", 141 * 2**30),
        ("512MiB", 2**29),
        ("1024", 1024),
        ("1.5 TiB", int(1.5 * 2**40)),
    ],
)
def test_parse_size(text, expected):
    assert P.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "0GB", "-1G", "80 GBs", "", "GiB"])
def test_parse_size_refuses(text):
    with pytest.raises(UserError, match="expected a size"):
        P.parse_size(text)


@pytest.mark.parametrize("memory", ["80GB", "141GB"])
def test_paper_grid_fits(memory):
    """All 75 SAEs, each once, in passes of one lr that fit the budget (decimal GB: safe side)."""
    cfg = TrainConfig.from_yaml(GRID)
    pl = P.plan(cfg, P.parse_size(memory))
    ids = [s.sae_id for p in pl.passes for s in p.saes]
    assert sorted(ids) == sorted(s.sae_id for s in cfg.specs()) and len(ids) == 75
    for p in pl.passes:
        assert {s.spec.lr for s in p.saes} == {p.lr}
        assert p.peak_bytes <= pl.budget_bytes
        assert cfg.max_saes_per_pass is None or len(p.saes) <= cfg.max_saes_per_pass
        assert all(
            cfg.runner_fields()["train_batch_size_tokens"] % s.micro_batches == 0 for s in p.saes
        )
    # x64 at a 32,768-token batch cannot step whole on 80 GB: its step is split
    assert any(s.micro_batches > 1 for p in pl.passes for s in p.saes if s.spec.expansion == 64)
    assert pl.seconds > 0


def test_unsplit_x64_step_is_over_128_gib():
    """The issue's arithmetic: a dense 32,768 x 131,072 fp32 tensor is 16 GiB; a step ~9 of them."""
    cfg = TrainConfig.from_yaml(GRID)
    est = P.Estimator(cfg, P.LLMJP_3_1_8B, P.Throughput.default("cuda", "float32"))
    x64 = P.PlannedSae(SaeSpec(64, 32, 1e-3, "scalar"), 64 * 2048)
    assert est.step(x64) > 128 * P.GiB


def test_pass_that_cannot_fit_names_it():
    cfg = TrainConfig.from_yaml(PAPER)
    with pytest.raises(UserError, match=r"pass lr=0.001 \[x16_k32_lr0.001_scalar\].*expected <="):
        P.plan(cfg, P.parse_size("8GB"))


def test_max_saes_per_pass_is_an_upper_bound():
    cfg = TrainConfig.from_yaml(GRID)
    cfg.max_saes_per_pass = 2
    pl = P.plan(cfg, P.parse_size("141GB"))
    assert max(len(p.saes) for p in pl.passes) <= 2


def _trainer(d: int, n: int, batch: int, seed: int, k: int = 4):
    from sae_lens.registry import get_sae_training_class
    from sae_lens.training.sae_trainer import SAETrainerConfig

    from llmjp_ckpt.saes.normalisation import TokenNormTopKTrainingSAEConfig
    from llmjp_ckpt.saes.splitstep import SplitStepTrainer

    cfg = SAETrainerConfig(  # SAELens' defaults elsewhere (no checkpoints, no wandb)
        total_training_samples=10 * batch,
        device="cpu",
        lr=1e-2,
        lr_end=1e-2,
        train_batch_size_samples=batch,
        dead_feature_window=3,
        feature_sampling_window=100,
        n_batches_for_norm_estimate=1,
    )
    torch.manual_seed(seed)
    sc = TokenNormTopKTrainingSAEConfig(d_in=d, d_sae=n, k=k, normalisation="scalar")
    sc.metadata["sae_id"] = "s"
    cls, _ = get_sae_training_class(sc.architecture())
    return SplitStepTrainer(
        cfg=cfg, sae=cls(sc), data_provider=iter(()), evaluator=None, save_checkpoint_fn=None
    )


def test_split_step_is_the_whole_step():
    """Same update as SAELens' own step (aux loss on: half the latents dead), dead stats too."""
    from llmjp_ckpt.saes.splitstep import SplitStepTrainer

    torch.manual_seed(1)
    batches = [torch.randn(64, 16) for _ in range(3)]
    whole, split = _trainer(16, 64, 64, 0), _trainer(16, 64, 64, 0)
    split.micro_batches_by_id = {"s": 4}  # instance attribute: this trainer only
    assert (
        isinstance(split, SplitStepTrainer)
        and split.micro_batches == 4
        and whole.micro_batches == 1
    )
    for t in (whole, split):
        t.n_forward_passes_since_fired[:32] = 10
    for b in batches:
        a, c = whole.step(b), split.step(b)
        torch.testing.assert_close(c.loss, a.loss, rtol=1e-5, atol=1e-6)
    for name, p in whole.sae.named_parameters():
        torch.testing.assert_close(
            dict(split.sae.named_parameters())[name], p, rtol=1e-4, atol=1e-6
        )
    assert torch.equal(whole.n_forward_passes_since_fired, split.n_forward_passes_since_fired)
    torch.testing.assert_close(whole.act_freq_scores, split.act_freq_scores)
    assert whole.n_frac_active_samples == split.n_frac_active_samples


def test_device_and_dtype_are_not_hashed():
    base = TrainConfig.from_yaml(PAPER)
    spec = base.specs()[0]
    other = TrainConfig.from_dict(
        {
            **_as_dict(base),
            "model": {
                **_as_dict(base)["model"],
                "device": "cuda:0",
                "dtype": "bfloat16",
                "sae_autocast": True,
            },
        }
    )
    assert spec_hash(base, 10, spec, "d") == spec_hash(other, 10, spec, "d")
    changed = TrainConfig.from_dict({**_as_dict(base), "hook_layer": 11})
    assert spec_hash(base, 10, spec, "d") != spec_hash(changed, 10, spec, "d")
    assert devices.without_runtime({"a": {"device": 1, "b": [{"dtype": 2, "c": 3}]}}) == {
        "a": {"b": [{"c": 3}]}
    }


def _as_dict(cfg: TrainConfig) -> dict:
    import dataclasses

    d = dataclasses.asdict(cfg)
    return {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}


def test_plan_cli(capsys):
    assert main(["plan", "--config", str(GRID), "--device-memory", "80GB"]) == 0
    out = capsys.readouterr().out
    assert "pass 1/" in out and "peak" in out and "total:" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--device-memory", "lots"], "--device-memory='lots': expected a size"),
        (["--device-memory", "80GB", "--dtype", "fp8"], "model.dtype='fp8': expected one of"),
        (["--device-memory", "4GB"], "pass lr="),
    ],
)
def test_plan_cli_bad_input(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--config", str(PAPER), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none(capsys, tmp_path):
    run = tmp_path / "run"
    for argv in (
        ["plan", "--config", str(PAPER)],
        ["train", "--config", str(PAPER), "--run", str(run), "--device", "cuda"],
        ["features", "--run", str(run), "--device", "cuda"],
        ["site", "--run", str(run), "--device", "cuda:1"],
        ["compare", "--run", str(run), "--device", "cuda"],
        ["match", str(run / "a"), str(run / "b"), "--out", str(run / "m.csv"), "--device", "cuda"],
        ["inspect", str(run), "--device", "cuda"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "no CUDA device" in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not run.exists()


def test_check_device_refuses_unknown():
    with pytest.raises(UserError, match="expected cpu, cuda, cuda:N or mps"):
        devices.check_device("tpu")
    assert devices.check_device("cpu") == "cpu"


def test_gpu_check_refuses_without_cuda(capsys):
    """benchmarks/gpu_check.py imports everywhere and, without CUDA, exits 2 with one line."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run")
    assert mod.main([]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA device" in err and len(err.strip().splitlines()) == 1


def test_train_prints_its_plan_from_the_checkpoint_config(tmp_path, capsys):
    """The shape comes from the checkpoint's config.json (no model loaded): what `train` prints."""
    from llmjp_ckpt.commands.plan import print_plan
    from tests.helpers import train_config
    from tests.model_builders import build_llama_config

    ckpt = tmp_path / "ckpts" / "iter_0000010"
    ckpt.mkdir(parents=True)
    build_llama_config(512).save_pretrained(ckpt)
    cfg = TrainConfig.from_dict(train_config(tmp_path / "ckpts", [10]))
    print_plan(cfg, "1GiB")
    out = capsys.readouterr().out
    assert "pass 1/1 lr=0.003: 3 SAEs" in out and "d_model 64" in out and "config.json" in out
