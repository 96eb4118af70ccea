"""``llmjp-ckpt checkpoints``: registered models, their steps and where each resolves."""

from __future__ import annotations

import argparse

HELP = "List the registered models and steps, and where each checkpoint resolves (local folder or hub revision)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-root", default=None, help="folder holding iter_XXXXXXX checkpoints (overrides the registry and LLMJP_CKPT_ROOT)")
    p.add_argument("--model", default=None, help="show only this registered model")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.models.registry import discover_steps, load_registry, step_path
    from llmjp_ckpt.runfolder import step_dir

    models = load_registry()
    if args.model and args.model not in models:
        raise UserError(f"unknown model {args.model!r}: registered are {sorted(models)}")
    for name, entry in models.items():
        if args.model and name != args.model:
            continue
        root = entry.root(args.checkpoint_root)
        found = discover_steps(root) if root is not None and root.is_dir() else []
        registered = [] if isinstance(entry.steps, str) else entry.steps
        print(f"{name}")
        print(f"  local root: {root if root is not None else '-'}{'' if root is None or root.is_dir() else '  (missing)'}")
        print(f"  hub: {entry.hub_repo or '-'}")
        for step in sorted(set(registered) | set(found)):
            local = f"found {step_path(root, step)}" if step in found else "not found locally"
            hub = entry.hub_revision(step) if entry.hub_repo and (entry.revision_pattern or step == entry.final_step) else "-"
            print(f"  {step:>8}  {step_dir(step)}  {local:<60}  hub revision: {hub}")
        if not registered and not found:
            print("  (no steps registered; the hub's main revision is the released model)")
    return 0
