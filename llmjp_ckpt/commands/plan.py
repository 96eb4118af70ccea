"""``llmjp-ckpt plan``: the activation passes of a training config, their peak memory and time."""

from __future__ import annotations

import argparse
from typing import Any

from llmjp_ckpt import devices

HELP = "The activation passes a training config needs, each with its peak memory and time; exit 2 if one cannot fit."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="configs/<paper|grid|demo>/<name>.yaml")
    p.add_argument(
        "--device-memory",
        default=None,
        help="device memory, e.g. 80GiB, 80GB, 141G (default: the config device's free "
        "memory; available RAM on cpu)",
    )
    devices.add_arguments(p, sae_autocast=True)


def print_plan(cfg: Any, memory: str | None) -> None:
    """Check device/dtype, plan every pass of ``cfg`` and print it (UserError if one cannot fit)."""
    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.saes.plan import device_memory, format_plan, model_shape, parse_size, plan
    from llmjp_ckpt.saes.training import steps_of

    if memory is not None:
        parse_size(memory)  # a bad size fails before anything else
    else:
        devices.check_device(cfg.model.device, "model.device")
    try:
        shape, source = model_shape(cfg)
    except UserError as exc:
        print(f"plan: made once the model is loaded ({exc})")
        return
    pl = plan(cfg, device_memory(cfg.model.device, memory), shape=shape)
    pl.shape_source = source
    steps = cfg.model.steps if isinstance(cfg.model.steps, list) else steps_of(cfg)
    print(format_plan(pl, len(steps)), flush=True)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from llmjp_ckpt.saes.config import TrainConfig

    cfg = TrainConfig.from_yaml(args.config)
    if devices.overrides(args):
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, **devices.overrides(args))
        )
    print_plan(cfg, args.device_memory)
    return 0
