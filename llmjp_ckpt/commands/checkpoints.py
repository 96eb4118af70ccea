"""``llmjp-ckpt checkpoints``: registered models, their steps and where each resolves."""

from __future__ import annotations

import argparse

HELP = "List the registered models and steps, and where each checkpoint resolves (local folder or hub revision)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint-root",
        default=None,
        help="folder holding iter_XXXXXXX checkpoints (overrides the registry and LLMJP_CKPT_ROOT)",
    )
    p.add_argument("--model", default=None, help="show only this registered model")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.models.registry import load_registry

    models = load_registry()
    if args.model and args.model not in models:
        raise UserError(f"unknown model {args.model!r}: registered are {sorted(models)}")
    for name, entry in models.items():
        if args.model and name != args.model:
            continue
        try:
            lines = describe(entry, args.checkpoint_root)
        except UserError as exc:
            if args.model:
                raise
            lines = [name, f"  (steps unavailable: {exc})"]
        print("\n".join(lines))
    return 0


def hub_cached(repo: str, revision: str) -> bool:
    """Whether the local hub cache holds ``revision`` of ``repo`` (its ``refs/`` entry)."""
    import os
    from pathlib import Path

    from huggingface_hub import constants

    cache = Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)
    return (cache / f"models--{repo.replace('/', '--')}" / "refs" / revision).is_file()


def describe(entry, checkpoint_root: str | None) -> list[str]:
    """The lines listing one model: its steps, and where each one resolves."""
    from llmjp_ckpt.models.adapter import available_steps, resolve, tl_checkpoint_steps
    from llmjp_ckpt.models.registry import discover_steps, hub_revision_steps, step_path
    from llmjp_ckpt.runfolder import step_dir

    root = entry.root(checkpoint_root)
    found = discover_steps(root) if root is not None and root.is_dir() else []
    source = "the registry"
    if root is not None and root.is_dir():
        source = f"the local root {root}"
    elif entry.steps == "transformer_lens":
        source = "TransformerLens' checkpoint list (loaded by its own checkpoint_value)"
    elif entry.steps == "hub_refs":
        source = (f"hub branches matching {entry.revision_regex!r}, "
                  f"read from {hub_revision_steps(entry)[1]}")
    registered = [] if isinstance(entry.steps, str) else list(entry.steps)
    if entry.steps == "transformer_lens":
        registered = tl_checkpoint_steps(entry.name)
    elif entry.steps == "hub_refs":
        registered = available_steps(entry, None)
    out = [f"{entry.name}  (loader: {entry.loader}; steps from {source})",
           (f"  local root: {root if root is not None else '-'}"
            f"{'' if root is None or root.is_dir() else '  (missing)'}"),
           f"  hub: {entry.hub_repo or ('-' if entry.loader == 'adapter' else entry.name)}"]
    for step in sorted(set(registered) | set(found)):
        local = f"found {step_path(root, step)}" if step in found else "not found locally"
        hub = "-"
        if entry.loader == "transformer_lens" or entry.steps == "hub_refs" or (
                entry.hub_repo and (entry.revision_pattern or step == entry.final_step)):
            res = resolve(entry.name, step) if root is None else None
            rev = res.revision if res is not None else entry.hub_revision(step)
            repo = res.hub_repo if res is not None else entry.hub_repo
            hub = f"{rev}{'  (in the local hub cache)' if repo and hub_cached(repo, rev) else ''}"
        out.append(f"  {step:>8}  {step_dir(step)}  {local:<60}  hub revision: {hub}")
    if not registered and not found:
        out.append("  (no steps registered; the hub's main revision is the released model)")
    return out
