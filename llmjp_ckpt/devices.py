"""Device and precision: checked once, set up once, never part of a result hash.

Every stage that runs a model or an SAE takes ``device`` (``cpu``, ``cuda``, ``cuda:N``,
``mps``) and ``dtype`` (the language model's: ``float32``, ``bfloat16``, ``float16``). SAEs
keep fp32 weights; training can autocast them to bf16 (``sae_autocast``). On CUDA, fp32
matmuls use TF32 (:func:`setup`). Results do not depend on where they were computed in the
sense the run folder cares about: :data:`RUNTIME_FIELDS` are dropped before hashing
(:func:`without_runtime`), so ``cuda`` -> ``cuda:0`` or fp32 -> bf16 never retrains or redoes
a stage (the manifest still records them).
"""

from __future__ import annotations

import re
from typing import Any

from llmjp_ckpt.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
RUNTIME_FIELDS = frozenset({"device", "dtype", "sae_autocast"})
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def check_dtype(name: str, where: str = "--dtype") -> str:
    """``name`` when it is a dtype the stages support, else a one-line :class:`UserError`."""
    if name not in DTYPES:
        raise UserError(f"{where}={name!r}: expected one of {', '.join(DTYPES)}")
    return name


def torch_dtype(name: str, where: str = "--dtype") -> Any:
    import torch

    return getattr(torch, check_dtype(name, where))


def check_device(device: str, where: str = "--device") -> str:
    """``device`` when this machine has it, else a one-line :class:`UserError`."""
    m = _DEVICE_RE.match(str(device))
    if not m:
        raise UserError(f"{where}={device!r}: expected cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return device
    import torch

    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"{where}={device!r}: no MPS device on this machine: expected cpu")
        return device
    if not torch.cuda.is_available():
        raise UserError(
            f"{where}={device!r}: no CUDA device on this machine (torch "
            f"{torch.__version__}): expected cpu"
        )
    if index is not None and int(index) >= torch.cuda.device_count():
        raise UserError(
            f"{where}={device!r}: this machine has {torch.cuda.device_count()} CUDA "
            f"device(s): expected cuda:0 ... cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def setup(device: str) -> None:
    """TF32 for fp32 matmuls and convolutions on CUDA (no effect elsewhere)."""
    if str(device).startswith("cuda"):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def check(device: str, dtype: str | None = None, where: str = "") -> None:
    """Check a device (and a dtype) before anything is written; set up TF32 on CUDA."""
    check_device(device, f"{where}device" if where else "--device")
    if dtype is not None:
        check_dtype(dtype, f"{where}dtype" if where else "--dtype")
    setup(device)


def without_runtime(config: Any) -> Any:
    """``config`` (dicts/lists, nested) without the :data:`RUNTIME_FIELDS` keys, for hashing."""
    if isinstance(config, dict):
        return {k: without_runtime(v) for k, v in config.items() if k not in RUNTIME_FIELDS}
    if isinstance(config, (list, tuple)):
        return [without_runtime(v) for v in config]
    return config


def add_arguments(p: Any, sae_autocast: bool = False) -> None:
    """``--device`` / ``--dtype`` (and ``--sae-autocast``) on a subcommand; None: the config's."""
    p.add_argument(
        "--device",
        default=None,
        help="torch device: cpu, cuda, cuda:N, mps (default: the config's, else cpu)",
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=None,
        help=f"language model dtype: {', '.join(DTYPES)} (default: the config's, else "
        "float32); SAEs keep fp32 weights",
    )
    if sae_autocast:
        p.add_argument(
            "--sae-autocast",
            action="store_true",
            default=None,
            help="train the SAEs under bf16 autocast (fp32 weights and Adam state)",
        )


def overrides(args: Any) -> dict[str, Any]:
    """The device/dtype flags given on the command line, as config field overrides."""
    out = {k: getattr(args, k, None) for k in ("device", "dtype", "sae_autocast")}
    return {k: v for k, v in out.items() if v is not None}
