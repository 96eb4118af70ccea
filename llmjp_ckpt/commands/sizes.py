"""``llmjp-ckpt sizes``: the same analysis at several model sizes (one run each) side by side."""

from __future__ import annotations

import argparse

HELP = ("Set several compared runs (e.g. LLM-jp-3 150m / 440m / 1.8b) side by side: class shares and "
        "shared fractions per checkpoint, per SAE id they share; writes OUT/sizes.json and figures.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", action="append", required=True, help="a run folder with compare done (repeat)")
    p.add_argument("--label", action="append", default=None,
                   help="a label per run, in order (default: each run's model.source)")
    p.add_argument("--out", required=True, help="folder for sizes.json and the figures")
    p.add_argument("--no-png", action="store_true", help="HTML figures only")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llmjp_ckpt import atomic
    from llmjp_ckpt.compare import sizes
    from llmjp_ckpt.plotting import write_figures

    view = sizes.size_view(args.run, args.label)  # every check before anything is written
    out = Path(args.out)
    figs = write_figures(sizes.figures(view), out, png=not args.no_png)
    atomic.write_json(out / "sizes.json", view | {"figures": figs})
    for sae_id, by_run in view["families"].items():
        for name, v in by_run.items():
            sf = ", ".join(f"{k} {x:.2f}" for k, x in v["shared_fraction"].items())
            print(f"{sae_id} [{name}]: shared fraction {sf or '-'}")
    print(f"wrote {out / 'sizes.json'} and {len(figs)} figures")
    return 0
