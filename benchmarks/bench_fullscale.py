"""P8: a full-shape rehearsal of the study on this CPU, with projections to the full study.

A random-weight checkpoint of exactly LLM-jp-3-1.8B's shape (24 blocks, d 2,048, 16 heads,
MLP 7,168, vocab 99,584, untied; bf16 on disk) with the real tokenizer when
``../shared/data/llm-jp-tokenizer-100k.ver3.0b1.model`` is there, then the paper configs'
stages with tiny budgets, each in its own process (peak RSS from ``os.wait4``):

- ``prepare``: prepare-data on a generated ja/en corpus;
- ``train``: SAELens training of two 32,768-latent SAEs (x16, K 32 and K 64) from one pass,
  a few steps, the LM in bf16 (``train_run``: planner, adapter, metrics);
- ``sae_step``: one SAE step (d 2,048, 32,768 latents, K 32, aux loss on) at two batches; the
  cost at the study's 32,768-token batch by linear scaling (FLOPs are linear in the batch);
  the largest batch that fits 24 GiB is the planner's answer;
- ``features``: the top-N pass (model + both SAEs' encode + bookkeeping) on ``--windows``
  test windows (labels are timed by the labelling benchmark, not here);
- ``compare``: matching the two SAEs' 32,768 decoders (``match_decoders``, the compare
  stage's cost).

Projections: the full study (six checkpoints: 132M training tokens and 16.5M test tokens each,
five matched pairs) on this CPU from the measured per-token costs, and on one H200 from
FLOPs at 40 % of its dense peak (bf16 989 TFLOP/s for the LM, TF32 495 TFLOP/s for the SAE).

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_fullscale.py [--work DIR] [--windows 128]``
(~15-25 min on 2 cores; ~9 GiB peak RSS). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPE = {"vocab_size": 99584, "hidden_size": 2048, "intermediate_size": 7168,
         "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
         "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
         "tie_word_embeddings": False}
TOKENIZER = REPO.parent / "shared" / "data" / "llm-jp-tokenizer-100k.ver3.0b1.model"
D, D_SAE, HOOK_LAYER = 2048, 32768, 12
STEP = 988240
TRAIN_BATCH = 512
STUDY = {"checkpoints": 6, "train_tokens": 132_000_000, "test_tokens": 16_500_000, "pairs": 5}
H200 = {"lm": 989e12 * 0.4, "sae": 495e12 * 0.4}


def flops() -> dict[str, float]:
    """Per-token FLOPs: the LM to block 12, an SAE train step (aux on), an SAE encode."""
    block = 2 * (4 * D * D + 3 * D * 7168) + 2 * 65 * D
    return {"lm": HOOK_LAYER * block, "sae_step": 18 * D * D_SAE, "sae_encode": 2 * D * D_SAE}


# --- stages (each runs in its own process) ---------------------------------------------------
def stage_build(work: Path) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from llmjp_ckpt.runfolder import step_dir

    out = work / "ckpts" / step_dir(STEP)
    tok_dir = work / "tok"
    if TOKENIZER.is_file():
        tok = LlamaTokenizer(vocab_file=str(TOKENIZER), add_bos_token=True, add_eos_token=False,
                             legacy=False)
        source = "the real LLM-jp tokenizer"
    else:
        from tests.model_builders import build_tokenizer

        tok = build_tokenizer(tok_dir, vocab_size=2000)
        source = "a generated SentencePiece tokenizer (../shared absent)"
    tok.save_pretrained(tok_dir)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # 3.7 GB in memory instead of 7.5
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else 3}
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, **ids, torch_dtype="bfloat16"))
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return {"params": n, "tokenizer": source, "tokenizer_size": len(tok)}


def stage_prepare(work: Path) -> dict[str, Any]:
    from llmjp_ckpt.data import corpus
    from tests.helpers import build_corpus, data_config

    build_corpus(work / "corpus", n_docs={"ja": 1500, "en": 1500}, words=(200, 400))
    t = time.perf_counter()
    cfg = data_config(work / "corpus", work / "tok", token_budget=64 * 4000)
    corpus.prepare_data(cfg, work / "run")
    dt = time.perf_counter() - t
    import datasets

    n = sum(len(datasets.load_from_disk(str(work / "run" / "data" / s))) for s in
            ("train", "val", "test"))
    return {"seconds": dt, "tokens": n * 65, "tokens_per_s": n * 65 / dt}


def train_cfg(work: Path) -> dict[str, Any]:
    return {
        "model": {"source": str(work / "ckpts"), "steps": [STEP], "dtype": "bfloat16"},
        "hook_layer": HOOK_LAYER,
        "saes": {"expansion": [16], "k": [32, 64], "lr": [1e-3], "normalisation": ["scalar"]},
        "runner": {"train_batch_size_tokens": TRAIN_BATCH, "training_tokens": 2 * TRAIN_BATCH,
                   "store_batch_size_prompts": 16, "n_batches_in_buffer": 8,
                   "lr_warm_up_steps": 1, "dead_feature_window": 1},
        "metrics": {"max_windows": 8, "batch_windows": 8, "ce": False, "dead_eval_tokens": 512},
    }


def stage_train(work: Path) -> dict[str, Any]:
    import torch

    from llmjp_ckpt.saes.training import train_run

    torch.manual_seed(0)
    t = time.perf_counter()
    out = train_run(train_cfg(work), work / "run")
    dt = time.perf_counter() - t
    secs = json.loads((out[0] / "metrics.json").read_text())["train_seconds"]
    tokens = 2 * TRAIN_BATCH
    return {"seconds": dt, "train_seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs,
            "saes": [str(p) for p in out]}


def stage_sae_step(work: Path) -> dict[str, Any]:
    import torch

    from benchmarks.gpu_check import BATCH
    from llmjp_ckpt.saes.config import SaeSpec, TrainConfig
    from llmjp_ckpt.saes.plan import LLMJP_3_1_8B, Estimator, GiB, PlannedSae, Throughput
    from tests.saes.test_plan import _trainer

    cfg = TrainConfig.from_dict({"model": {"source": "x", "dtype": "bfloat16"}, "runner": {
        "train_batch_size_tokens": BATCH, "training_tokens": 100 * BATCH,
        "n_batches_in_buffer": 1024, "dead_feature_window": 10}})
    est = Estimator(cfg, LLMJP_3_1_8B, Throughput.default("cpu", "bfloat16"))
    sae = PlannedSae(SaeSpec(16, 32, 1e-3, "scalar"), D_SAE)
    fits = 0
    for b in (2**i for i in range(8, 16)):  # the planner's estimate with the bf16 LM loaded
        est.batch = b
        if est.peak([sae])[0] <= 24 * GiB:
            fits = b
    times = {}
    for b in (512, 1024):
        tr = _trainer(D, D_SAE, b, 0, k=32)
        tr.n_forward_passes_since_fired[: D_SAE // 2] = 10
        x = torch.randn(b, D)
        t = time.perf_counter()
        tr.step(x)
        times[b] = time.perf_counter() - t
        del tr
    per_token = (times[1024] - times[512]) / 512 if times[1024] > times[512] else times[1024] / 1024
    return {"largest_batch_in_24GiB": fits, "step_s": times, "s_per_token": per_token,
            "step_s_at_32768": per_token * 32768 + (times[512] - per_token * 512),
            "tokens_per_s": 1 / per_token}


def stage_features(work: Path, windows: int) -> dict[str, Any]:
    from llmjp_ckpt.features.analyze import (
        FeaturesConfig,
        default_model_loader,
        discover_saes,
        load_test_tokens,
        run_step,
    )

    run = work / "run"
    saes = discover_saes(run)[STEP]
    cfg = FeaturesConfig(max_windows=windows, dtype="bfloat16", norm_study=False, png=False)
    tokens = load_test_tokens(run, windows)
    loader = default_model_loader(run, cfg, next(iter(saes.values())))
    t = time.perf_counter()
    model = loader(STEP)
    load = time.perf_counter() - t
    t = time.perf_counter()
    run_step(run, STEP, saes, cfg, lambda _s: model, tokens, force=True)
    dt = time.perf_counter() - t
    n = tokens.shape[0] * (tokens.shape[1] - 1)
    return {"seconds": dt, "model_load_s": load, "windows": tokens.shape[0], "tokens": n,
            "tokens_per_s": n / dt}


def stage_compare(work: Path) -> dict[str, Any]:
    from llmjp_ckpt.compare.decoders import load_decoder
    from llmjp_ckpt.compare.matching import match_decoders
    from llmjp_ckpt.features.analyze import discover_saes

    a, b = sorted(discover_saes(work / "run")[STEP].values())
    t = time.perf_counter()
    res = match_decoders(load_decoder(a), load_decoder(b))
    dt = time.perf_counter() - t
    return {"seconds": dt, "method": res.method, "shared_fraction": res.shared_fraction}


STAGES = ("build", "prepare", "train", "sae_step", "features", "compare")


def run_stage(name: str, work: Path, windows: int) -> dict[str, Any]:
    """Run one stage in a child process; its result plus the child's peak RSS."""
    out = work / f"{name}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, __file__, "--work", str(work), "--windows",
                             str(windows), "--stage", name], cwd=REPO, env=env)
    t = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"stage {name} failed (status {status})")
    res = json.loads(out.read_text())
    res["wall_s"], res["peak_rss_gib"] = wall, usage.ru_maxrss * 1024 / 2**30
    print(name, json.dumps(res), flush=True)
    return res


def projections(r: dict[str, dict[str, Any]]) -> dict[str, Any]:
    f = flops()
    s = STUDY
    lm_tok = 1 / r["features"]["tokens_per_s"]  # features: LM forward + 2 SAE encodes + top-N
    train_tok = 1 / r["train"]["tokens_per_s"]  # LM + 2 SAE steps (as measured: SAE per token)
    sae_tok = r["sae_step"]["s_per_token"]
    cpu = {
        "train (1 SAE)": s["checkpoints"] * s["train_tokens"] * (train_tok - sae_tok),
        "features": s["checkpoints"] * s["test_tokens"] * lm_tok,
        "compare": s["pairs"] * r["compare"]["seconds"],
    }
    h200 = {
        "train (1 SAE)": s["checkpoints"] * s["train_tokens"] * (f["lm"] / H200["lm"]
                                                                + f["sae_step"] / H200["sae"]),
        "features": s["checkpoints"] * s["test_tokens"] * (f["lm"] / H200["lm"]
                                                          + f["sae_encode"] / H200["sae"]),
        "compare": s["pairs"] * 2 * D_SAE * D_SAE * D / H200["sae"],
    }
    return {"cpu_s": cpu, "h200_s": h200, "flops_per_token": f}


def main() -> int:
    ap = argparse.ArgumentParser(description="P8 full-shape rehearsal")
    ap.add_argument("--work", default="/tmp/llmjp-fullscale")
    ap.add_argument("--windows", type=int, default=128)
    ap.add_argument("--stage", choices=STAGES, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", default=None, help="stages to (re)run")
    args = ap.parse_args()
    work = Path(args.work)
    if args.stage:
        import torch

        torch.set_num_threads(2)
        fn = globals()[f"stage_{args.stage}"]
        res = fn(work, args.windows) if args.stage == "features" else fn(work)
        (work / f"{args.stage}.json").write_text(json.dumps(res, default=str))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in STAGES:
        cached = work / f"{name}.json"
        if args.only is not None and name not in args.only and cached.is_file():
            results[name] = json.loads(cached.read_text())
            continue
        results[name] = run_stage(name, work, args.windows)
        cached.write_text(json.dumps(results[name], default=str))
    proj = projections(results)
    print("\n| stage | work | wall | tokens/s | peak RSS |\n| --- | --- | --- | --- | --- |")
    for name in STAGES:
        r = results[name]
        tps = f"{r['tokens_per_s']:,.0f}" if "tokens_per_s" in r else "-"
        print(f"| {name} | {r.get('tokens', r.get('params', ''))} | {r['wall_s']:.0f} s | {tps} | "
              f"{r['peak_rss_gib']:.1f} GiB |")
    print("\n| full study | this CPU | one H200 (40 % of peak) |\n| --- | --- | --- |")
    for k in proj["cpu_s"]:
        print(f"| {k} | {proj['cpu_s'][k] / 3600:,.1f} h | {proj['h200_s'][k] / 60:,.1f} min |")
    print(json.dumps({"results": results, "projections": proj}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
