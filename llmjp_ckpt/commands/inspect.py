"""``llmjp-ckpt inspect``: load one checkpoint, print its config, size and TL-vs-HF parity."""

from __future__ import annotations

import argparse

HELP = (
    "Load one checkpoint as a HookedTransformer; print its config, parameter count "
    "and the TL-vs-HF logit difference."
)
DEFAULT_TEXT = "京都は日本の古い都です。Kyoto is an old capital of Japan."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="registered model name (see `checkpoints`) or a local HF checkpoint folder")
    p.add_argument("--step", type=int, default=None, help="training step (iter_XXXXXXX) of a registered model")
    p.add_argument("--checkpoint-root", default=None, help="folder holding iter_XXXXXXX checkpoints")
    p.add_argument("--text", default=DEFAULT_TEXT, help="text for the logit comparison")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow .bin/.pt weights (unpickling runs code: only for trusted files)",
    )
    p.add_argument("--no-parity", action="store_true", help="skip loading the HF model for the logit comparison")
    from llmjp_ckpt import devices

    devices.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from llmjp_ckpt import devices
    from llmjp_ckpt.models.adapter import Resolved, load_hf_model, load_model, registry, resolve

    device = devices.check_device(args.device or "cpu")
    dtype = devices.torch_dtype(args.dtype or "float32")
    devices.setup(device)
    model = load_model(args.source, args.step, checkpoint_root=args.checkpoint_root, trust_pickle=args.trust_pickle,
                       device=device, dtype=dtype)
    cfg = model.cfg
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.source}" + (f"  step {args.step}" if args.step is not None else ""))
    for key in (
        "n_layers",
        "d_model",
        "n_heads",
        "d_head",
        "d_mlp",
        "d_vocab",
        "n_ctx",
        "rotary_base",
        "normalization_type",
        "act_fn",
    ):
        print(f"  {key}: {getattr(cfg, key)}")
    print(f"  tokenizer size: {len(model.tokenizer)}  (ids >= this are vocab padding)")
    print(f"  parameters: {n_params:,}")
    if args.no_parity:
        return 0
    if args.source in registry():
        res = resolve(args.source, args.step, None, args.checkpoint_root)
    else:
        res = Resolved(name=str(args.source), step=args.step, local_dir=Path(model.cfg.tokenizer_name))
    hf = load_hf_model(res, dtype, args.trust_pickle).to(device)
    ids = model.to_tokens(args.text).to(device)
    with torch.no_grad():
        diff = (model(ids).float() - hf(ids).logits.float()).abs().max().item()
    print(f"  tokens: {ids.shape[1]} (BOS first: {ids[0, 0].item() == model.tokenizer.bos_token_id})")
    print(f"  TL vs HF logits max |diff|: {diff:.3e}")
    return 0
