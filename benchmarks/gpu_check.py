"""A GPU check at LLM-jp-3-1.8B's full shape (<= 8 min on one CUDA device; never run by CI).

Stages, each with its peak GPU memory (``torch.cuda.max_memory_allocated``):

1. extraction: a random-weight HookedTransformer of LLM-jp-3-1.8B's shape (24 blocks, d 2,048,
   16 heads, MLP 7,168, vocab 99,584) in bf16, run to ``blocks.11.hook_resid_post``
   (``stop_at_layer=12``) on 64 x 65-token windows: tokens/s and MFU (forward FLOPs of 12 blocks
   per token x tokens/s / the device's bf16 peak);
2. one SAE step at d 2,048 / 32,768 latents / K 32 / batch 32,768 (fp32 weights, TF32 on; the
   aux loss on): ms per step and % of its FLOP floor (18 x d x d_sae FLOPs per token at the TF32
   peak), as SAELens' ``SAETrainer`` steps it;
3. the features pass on 1,000 windows (model + SAE encode + top-N bookkeeping,
   ``llmjp_ckpt.features.topn.collect_topn``): windows/s;
4. bf16-vs-fp32 parity of the hooked activations (relative error) and of the SAE's TopK
   latents on them (fraction of the same latents selected).

Run: ``python benchmarks/gpu_check.py [--device cuda:0] [--peak-tflops 989] [--out FILE.json]``.
Without CUDA it prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

D, LAYERS, HEADS, D_MLP, VOCAB, CTX = 2048, 24, 16, 7168, 99584, 65
HOOK_BLOCK = 11  # the study's layer 12: blocks.11.hook_resid_post
D_SAE, K, BATCH = 32768, 32, 32768


def block_flops(n_ctx: int = CTX) -> float:
    """Forward FLOPs per token of one Llama block (gated MLP, causal attention)."""
    return 2 * (4 * D * D + 3 * D * D_MLP) + 2 * n_ctx * D


def build_model(device: str, dtype: Any) -> Any:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        d_model=D,
        n_layers=LAYERS,
        n_heads=HEADS,
        d_head=D // HEADS,
        d_mlp=D_MLP,
        d_vocab=VOCAB,
        n_ctx=CTX,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        gated_mlp=True,
        final_rms=True,
        device=device,
        dtype=dtype,
    )
    torch.manual_seed(0)
    return HookedTransformer(cfg).eval()


def peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def reset() -> None:
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def extraction(model: Any, device: str, peak: float) -> tuple[dict[str, Any], Any]:
    import torch

    hook = f"blocks.{HOOK_BLOCK}.hook_resid_post"
    tokens = torch.randint(3, VOCAB, (64, CTX), device=device)
    reset()
    with torch.no_grad():
        model.run_with_cache(tokens[:8], names_filter=[hook], stop_at_layer=HOOK_BLOCK + 1)
        torch.cuda.synchronize()
        t, reps = time.perf_counter(), 10
        for _ in range(reps):
            _, cache = model.run_with_cache(
                tokens, names_filter=[hook], stop_at_layer=HOOK_BLOCK + 1
            )
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / reps
    tps = tokens.numel() / dt
    mfu = tps * block_flops() * (HOOK_BLOCK + 1) / peak
    return {
        "tokens_per_s": round(tps),
        "mfu": round(mfu, 3),
        "peak_gib": round(peak_gib(), 2),
        "arithmetic": f"{HOOK_BLOCK + 1} blocks x {block_flops() / 1e6:.0f} MFLOP/token x "
        f"{tps:,.0f} tokens/s / {peak / 1e12:.0f} TFLOP/s",
    }, cache[hook]


def sae_step(device: str, tf32_peak: float) -> dict[str, Any]:
    import torch
    from sae_lens.registry import get_sae_training_class
    from sae_lens.training.sae_trainer import SAETrainer, SAETrainerConfig

    from llmjp_ckpt.saes.normalisation import TokenNormTopKTrainingSAEConfig

    cfg = SAETrainerConfig(  # SAELens' defaults elsewhere (no checkpoints, no wandb)
        total_training_samples=100 * BATCH,
        device=device,
        lr=1e-3,
        lr_end=1e-3,
        train_batch_size_samples=BATCH,
        dead_feature_window=5,
        feature_sampling_window=1000,
        n_batches_for_norm_estimate=1,
    )
    sc = TokenNormTopKTrainingSAEConfig(
        d_in=D, d_sae=D_SAE, k=K, normalisation="scalar", device=device
    )
    cls, _ = get_sae_training_class(sc.architecture())
    trainer = SAETrainer(
        cfg=cfg,
        sae=cls(sc).to(device),
        data_provider=iter(()),
        evaluator=None,
        save_checkpoint_fn=None,
    )
    trainer.n_forward_passes_since_fired[: D_SAE // 2] = 10  # aux loss on, as in a long run
    x = torch.randn(BATCH, D, device=device)
    reset()
    trainer.step(x)
    torch.cuda.synchronize()
    t, reps = time.perf_counter(), 5
    for _ in range(reps):
        trainer.step(x)
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t) / reps * 1e3
    floor_ms = 18 * D * D_SAE * BATCH / tf32_peak * 1e3
    out = {
        "ms_per_step": round(ms, 1),
        "floor_ms": round(floor_ms, 1),
        "pct_of_floor": round(100 * floor_ms / ms, 1),
        "peak_gib": round(peak_gib(), 2),
        "arithmetic": f"18 x {D} x {D_SAE} x {BATCH} FLOP / {tf32_peak / 1e12:.0f} TFLOP/s",
    }
    from llmjp_ckpt.saes.config import SaeSpec, TrainConfig
    from llmjp_ckpt.saes.plan import LLMJP_3_1_8B, Estimator, PlannedSae, Throughput

    tc = TrainConfig.from_dict(
        {
            "model": {"source": "x"},
            "runner": {
                "train_batch_size_tokens": BATCH,
                "training_tokens": 100 * BATCH,
                "n_batches_in_buffer": 1024,
                "dead_feature_window": 10,
            },
        }
    )
    est = Estimator(tc, LLMJP_3_1_8B, Throughput.default("cuda", "float32"))
    one = PlannedSae(SaeSpec(16, K, 1e-3, "scalar"), D_SAE)
    out["planner_estimate_gib"] = round((est.persistent(one) + est.step(one)) / 2**30, 2)
    del trainer, x
    return out


def features_pass(model: Any, device: str) -> dict[str, Any]:
    import torch

    from llmjp_ckpt.features.topn import TopNConfig, collect_topn
    from llmjp_ckpt.saes.normalisation import TokenNormTopKSAE, TokenNormTopKSAEConfig

    sc = TokenNormTopKSAEConfig(d_in=D, d_sae=D_SAE, k=K, normalisation="scalar", device=device)
    sc.metadata.hook_name = f"blocks.{HOOK_BLOCK}.hook_resid_post"
    sae = TokenNormTopKSAE(sc).to(device).eval()
    tokens = torch.randint(3, VOCAB, (1000, CTX))
    hook = sc.metadata.hook_name

    @torch.no_grad()
    def encode(toks: Any) -> dict[str, Any]:
        _, cache = model.run_with_cache(
            toks.to(device), names_filter=[hook], stop_at_layer=HOOK_BLOCK + 1
        )
        return {"sae": sae.encode(cache[hook][:, 1:])}

    reset()
    t = time.perf_counter()
    collect_topn(
        tokens, encode, {"sae": D_SAE}, TopNConfig(batch_size=64), desc="gpu_check features"
    )
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {
        "windows": 1000,
        "seconds": round(dt, 1),
        "windows_per_s": round(1000 / dt, 1),
        "peak_gib": round(peak_gib(), 2),
    }


def parity(model_bf16: Any, device: str) -> dict[str, Any]:
    import torch

    from llmjp_ckpt.saes.normalisation import TokenNormTopKSAE, TokenNormTopKSAEConfig

    hook = f"blocks.{HOOK_BLOCK}.hook_resid_post"
    state = {k: v.float() for k, v in model_bf16.state_dict().items()}
    model32 = build_model(device, torch.float32)
    model32.load_state_dict(state)
    tokens = torch.randint(3, VOCAB, (16, CTX), device=device)
    with torch.no_grad():
        _, c16 = model_bf16.run_with_cache(
            tokens, names_filter=[hook], stop_at_layer=HOOK_BLOCK + 1
        )
        _, c32 = model32.run_with_cache(tokens, names_filter=[hook], stop_at_layer=HOOK_BLOCK + 1)
        a16, a32 = c16[hook][:, 1:].float(), c32[hook][:, 1:]
        rel = ((a16 - a32).norm(dim=-1) / a32.norm(dim=-1)).mean().item()
        sc = TokenNormTopKSAEConfig(d_in=D, d_sae=D_SAE, k=K, normalisation="scalar", device=device)
        sae = TokenNormTopKSAE(sc).to(device).eval()
        i16 = sae.encode(a16).topk(K, dim=-1).indices
        i32 = sae.encode(a32).topk(K, dim=-1).indices
        same = (i16.unsqueeze(-1) == i32.unsqueeze(-2)).any(-1).float().mean().item()
    del model32
    return {"activation_rel_error": round(rel, 4), "topk_overlap": round(same, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100/H200)")
    ap.add_argument("--tf32-tflops", type=float, default=495.0, help="TF32 dense peak (H100/H200)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() or not args.device.startswith("cuda"):
        print(
            f"gpu_check: needs a CUDA device (--device {args.device}; torch "
            f"{torch.__version__} sees {torch.cuda.device_count()}): nothing run",
            file=sys.stderr,
        )
        return 2
    from llmjp_ckpt.devices import check_device, setup

    setup(check_device(args.device))
    started = time.perf_counter()
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(args.device)}
    model = build_model(args.device, torch.bfloat16)
    res["extraction_bf16"], _ = extraction(model, args.device, args.peak_tflops * 1e12)
    print(json.dumps({"extraction_bf16": res["extraction_bf16"]}), flush=True)
    res["sae_step"] = sae_step(args.device, args.tf32_tflops * 1e12)
    print(json.dumps({"sae_step": res["sae_step"]}), flush=True)
    res["features_1000_windows"] = features_pass(model, args.device)
    print(json.dumps({"features_1000_windows": res["features_1000_windows"]}), flush=True)
    res["parity_bf16_vs_fp32"] = parity(model, args.device)
    res["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
