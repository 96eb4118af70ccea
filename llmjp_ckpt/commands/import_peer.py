"""``llmjp-ckpt import-peer``: the study authors' published SAE -> a SAELens-format SAE."""

from __future__ import annotations

import argparse

HELP = ("Import one of the study authors' SAEs (their config.json + safetensors, a local folder or "
        "a hub repo id; no remote code is run) as a SAELens SAE with Scalar normalisation.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder, or hub repo id such as llm-jp/llm-jp-3-1.8b-sae-l12-k32-16x-c1000")
    p.add_argument("--out", required=True, help="SAE folder to write (e.g. RUN/peer/iter_0001000/peer)")
    p.add_argument("--revision", default=None, help="hub revision (default: main)")
    p.add_argument("--hook", default="blocks.11.hook_resid_post",
                   help="hook the SAE reads (the study's layer 12: blocks.11.hook_resid_post)")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.hub.peer import import_peer

    out = import_peer(args.src, args.out, hook_name=args.hook, revision=args.revision)
    print(f"imported {args.src} -> {out}")
    return 0
