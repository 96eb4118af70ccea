"""B1: what a bf16 language model changes, against fp32 (CPU, a small LLM-jp-shaped model).

Two runs on the same prepared windows and seeds: the LM in fp32 and in bf16 (SAEs keep fp32
weights in both). Reported: the trained SAEs' explained variance and dead fraction on val, and
for the fp32-trained SAE the top-N overlap of its features computed from fp32 vs bf16
activations (mean over live latents of |top-N windows fp32 ∩ bf16| / N).

Run: ``.venv/bin/python benchmarks/bench_bf16.py [--d-model 256] [--steps 60] [--expansion 8]
[--layers 4]`` (``--d-model 2048``: LLM-jp-3-1.8B's width).
On a GPU, ``benchmarks/gpu_check.py`` measures the same parity at the full shape.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--n-top", type=int, default=20)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(2)

    import llmjp_ckpt  # noqa: F401
    from llmjp_ckpt.data import corpus
    from llmjp_ckpt.features.analyze import load_test_tokens
    from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder
    from llmjp_ckpt.models.adapter import load_model
    from llmjp_ckpt.saes.training import train_run
    from llmjp_ckpt.weights import load_sae
    from tests.helpers import build_corpus, data_config, train_config
    from tests.model_builders import build_checkpoints, build_tokenizer

    d = args.d_model
    root = Path(tempfile.mkdtemp(prefix="bench-bf16-"))
    tok = build_tokenizer(root / "tok", vocab_size=2000)
    tok.save_pretrained(root / "tok")
    build_checkpoints(root / "ckpts", [10], tok, hidden_size=d, intermediate_size=int(3.5 * d),
                      num_hidden_layers=args.layers, num_attention_heads=max(8, d // 128),
                      num_key_value_heads=max(8, d // 128))
    build_corpus(root / "corpus", n_docs={"ja": 600, "en": 600})
    batch = 1024
    out: dict[str, dict] = {}
    runs = {}
    for dtype in ("float32", "bfloat16"):
        run = root / dtype
        corpus.prepare_data(data_config(root / "corpus", root / "tok", token_budget=64 * 6000), run)
        cfg = train_config(
            root / "ckpts", [10], hook_layer=2,
            model={"source": str(root / "ckpts"), "steps": [10], "dtype": dtype},
            saes={"expansion": [args.expansion], "k": [16], "lr": [3e-3], "normalisation": ["scalar"]},
            runner={"train_batch_size_tokens": batch, "training_tokens": batch * args.steps,
                    "store_batch_size_prompts": 16, "n_batches_in_buffer": 32,
                    "lr_warm_up_steps": min(5, args.steps // 3),
                    "dead_feature_window": min(20, args.steps // 2)},
            metrics={"max_windows": 256, "batch_windows": 32, "ce": False},
        )
        torch.manual_seed(0)
        sae_dir = train_run(cfg, run)[0]
        runs[dtype] = (run, sae_dir)
        m = json.loads((sae_dir / "metrics.json").read_text())
        out[dtype] = {k: m.get(k) for k in ("explained_variance", "fvu", "dead_fraction", "l0")}
    run, sae_dir = runs["float32"]
    tokens = load_test_tokens(run, 512)
    sae = load_sae(sae_dir, "cpu")
    tops = {}
    for dtype in ("float32", "bfloat16"):
        model = load_model(str(root / "ckpts" / "iter_0000010"), dtype=getattr(torch, dtype))
        res = collect_topn(tokens, model_encoder(model, {"s": sae}), {"s": sae.cfg.d_sae},
                           TopNConfig(n_top=args.n_top, batch_size=32), desc=f"top-N {dtype}")
        tops[dtype] = res["s"].top_windows
    a, b = tops["float32"], tops["bfloat16"]
    live = (a >= 0).any(1)
    overlap = [len(set(a[i][a[i] >= 0].tolist()) & set(b[i][b[i] >= 0].tolist()))
               / max(int((a[i] >= 0).sum()), 1) for i in torch.nonzero(live).flatten().tolist()]
    out["top_n_overlap_fp32_sae"] = {"n_top": args.n_top, "live_latents": int(live.sum()),
                                     "mean_overlap": sum(overlap) / max(len(overlap), 1)}
    print(json.dumps({"d_model": d, "layers": args.layers, "hook_layer": 2, "d_sae": args.expansion * d, "k": 16,
                      "steps": args.steps, "batch": batch, **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
