"""The memory planner: which SAEs share one activation pass, how each step is split, peak and time.

``llmjp-ckpt plan`` prints the plan and ``train`` follows it. SAEs are grouped by learning rate
(one SAELens ``MultiSAETrainingRunner`` per pass, as :mod:`llmjp_ckpt.saes.training` trains
them), then packed first-fit by size (largest first) into passes that fit the device memory,
at most ``max_saes_per_pass`` each. An SAE whose step alone does not fit is *split*: its
batch is cut into ``micro_batches`` equal parts whose gradients are summed before the one Adam
step (:mod:`llmjp_ckpt.saes.splitstep`), the same update SAELens makes on the whole batch.

Peak memory of a pass (bytes, fp32 SAEs; the coefficients were measured on CPU with SAELens
6.54, see BENCHMARKS.md "P7" and ``tests/saes/test_plan.py``):

- the language model's weights (``n_params`` x its dtype) and one forward's transients;
- SAELens' mixing buffer: ``n_batches_in_buffer x 64`` activations x ``d_in`` x 4, up to 3x
  while it is refilled (concatenate + permute), once per hook of the pass (a layer sweep's
  multi-hook store concatenates every hook's activations in one buffer);
- every SAE's parameters, gradients and Adam's two moments: 4 x params x 4;
- the step of the SAE being stepped: ``STEP_DENSE`` dense (batch / micro_batches) x d_sae fp32
  tensors (hidden pre-activations before and after the decoder-norm rescale, the TopK
  scatter, the aux-loss mask and scatter, their gradients, the firing mask) plus
  ``STEP_INPUT`` batch x d_in tensors;
- what ``MultiSAETrainer.fit`` keeps of the SAEs already stepped in this step: each one's
  ``TrainStepOutput`` (``feature_acts`` and ``hidden_pre``: ``KEPT_DENSE`` dense tensors, plus
  ``sae_in`` / ``sae_out``). SAEs are stepped smallest first, which minimises that peak.

Time: FLOPs at a stated fraction of the device's peak (:class:`Throughput`); the language model
runs once per batch up to the deepest hooked block of the pass.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.saes.config import SaeSpec, TrainConfig, check_layers_fit, resolve_hook

GiB = 1024**3
STEP_DENSE = {
    True: 9.0,
    False: 7.0,
}  # dense batch x d_sae fp32 tensors at a step's peak, by aux loss
STEP_INPUT = 6.0  # batch x d_in fp32 tensors of one step (input, normalised input, output, grads)
KEPT_DENSE = 2.0  # feature_acts + hidden_pre kept per stepped SAE until the step ends
KEPT_INPUT = 2.0  # sae_in + sae_out kept with them
BUFFER_FACTOR = 3.0  # the mixing buffer while refilled: keep + new, concatenated, permuted
HEADROOM = 0.92  # fraction of the device memory the plan may use (allocator fragmentation)
MAX_SPLIT = 64  # most micro-batches a step is cut into
MIN_ROWS = 1024  # ... and never below this many tokens a micro-batch (matmuls stay efficient)
WINDOW_POSITIONS = 64  # trained positions per 65-token window
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(i?)(B?))?\s*$", re.IGNORECASE)


def parse_size(text: str | int, where: str = "--device-memory") -> int:
    """``"80GiB"`` / ``"141G"`` (2^30) / ``"80GB"`` (10^9) / ``"512MiB"`` / plain bytes -> bytes."""
    m = _SIZE_RE.match(str(text))
    if not m or float(m.group(1)) <= 0 or isinstance(text, bool):
        raise UserError(f"{where}={text!r}: expected a size such as 80GiB, 80GB, 141G or 512MiB")
    unit, binary, b = m.group(2), m.group(3), m.group(4)
    if not unit:
        return int(float(m.group(1)))
    base = 1000 if (b and not binary) else 1024  # "GB": decimal; "GiB" and a bare "G": binary
    return int(float(m.group(1)) * base ** (" KMGT".index(unit.upper())))


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs of the language model."""

    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    d_vocab: int
    tied: bool = False
    params: int | None = None  # counted on a loaded model (overrides the formula)

    @property
    def n_params(self) -> int:
        if self.params is not None:
            return self.params
        d = self.d_model
        block = 4 * d * d + 3 * d * self.d_mlp + 2 * d
        return self.n_layers * block + self.d_vocab * d * (1 if self.tied else 2) + d

    def forward_flops(self, blocks: int, n_ctx: int = 65) -> float:
        """Forward FLOPs per token through ``blocks`` blocks (gated MLP, causal attention)."""
        d = self.d_model
        return blocks * (2 * (4 * d * d + 3 * d * self.d_mlp) + 2 * n_ctx * d)

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> ModelShape:
        return cls(
            cfg["num_hidden_layers"],
            cfg["hidden_size"],
            cfg["num_attention_heads"],
            cfg["intermediate_size"],
            cfg["vocab_size"],
            bool(cfg.get("tie_word_embeddings")),
        )


def model_shape_of(model: Any) -> ModelShape:
    """The shape of a loaded ``HookedTransformer`` (its parameters counted)."""
    c = model.cfg
    return ModelShape(
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.d_mlp or 4 * c.d_model,
        c.d_vocab,
        params=sum(p.numel() for p in model.parameters()),
    )


# LLM-jp-3-1.8B (config.json of llm-jp/llm-jp-3-1.8b): used when no checkpoint is on disk.
LLMJP_3_1_8B = ModelShape(n_layers=24, d_model=2048, n_heads=16, d_mlp=7168, d_vocab=99584)
KNOWN_SHAPES = {"llm-jp/llm-jp-3-1.8b": LLMJP_3_1_8B}


def registry_shape(name: str) -> ModelShape | None:
    """The shape a registry entry declares (``shape:`` with ``d_mlp``), else ``None``."""
    from llmjp_ckpt.models.registry import load_registry

    entry = load_registry().get(name)
    sh = entry.shape if entry is not None else None
    if not sh or "d_mlp" not in sh:
        return None
    return ModelShape(sh["n_layers"], sh["d_model"], sh["n_heads"], sh["d_mlp"], sh["d_vocab"])


def model_shape(cfg: TrainConfig) -> tuple[ModelShape, str]:
    """The model's shape from a checkpoint's config.json on disk, else the built-in table."""
    candidates: list[Path] = []
    src = Path(cfg.model.source)
    if cfg.model.checkpoint_root:
        candidates += sorted(Path(cfg.model.checkpoint_root).glob("iter_*/config.json"))
    candidates += (
        [src / "config.json", *sorted(src.glob("iter_*/config.json"))] if src.is_dir() else []
    )
    if not candidates:
        try:
            from llmjp_ckpt.models.adapter import resolve

            steps = cfg.model.steps if isinstance(cfg.model.steps, list) else [None]
            res = resolve(cfg.model.source, steps[0], None, cfg.model.checkpoint_root)
            if res.local_dir is not None:
                candidates.append(Path(res.local_dir) / "config.json")
        except (UserError, OSError, KeyError, TypeError, ValueError):
            pass
    for path in candidates:
        if path.is_file():
            return ModelShape.from_hf_config(json.loads(path.read_text(encoding="utf-8"))), str(
                path
            )
    if cfg.model.source in KNOWN_SHAPES:
        return KNOWN_SHAPES[cfg.model.source], f"built-in shape of {cfg.model.source}"
    registered = registry_shape(cfg.model.source)
    if registered is not None:
        return registered, f"registered shape of {cfg.model.source}"
    raise UserError(
        f"model.source={cfg.model.source!r}: no config.json found to plan from "
        "(expected a checkpoint folder on disk or a known model)"
    )


@dataclass(frozen=True)
class Throughput:
    """Device speed assumed for time estimates: ``peak_flops`` x ``efficiency``."""

    lm_peak_flops: float
    sae_peak_flops: float
    efficiency: float
    note: str

    @classmethod
    def default(cls, device: str, lm_dtype: str, sae_autocast: bool = False) -> Throughput:
        if device.startswith("cuda"):
            # H100/H200 SXM dense peaks: bf16 989 TFLOP/s, TF32 495 TFLOP/s (TF32 is on for fp32).
            lm = 989e12 if lm_dtype != "float32" else 495e12
            sae = 989e12 if sae_autocast else 495e12
            return cls(
                lm,
                sae,
                0.4,
                f"H100/H200 peak (LM {lm / 1e12:.0f}, SAE {sae / 1e12:.0f} TFLOP/s) at 40 %",
            )
        # Measured on the project's 2-core CPU: fp32 matmul ~16 GFLOP/s, bf16 ~44 GFLOP/s.
        lm = 44e9 if lm_dtype == "bfloat16" else 16e9
        return cls(lm, 16e9, 1.0, f"2-core CPU matmul rate (LM {lm / 1e9:.0f}, SAE 16 GFLOP/s)")


@dataclass
class PlannedSae:
    spec: SaeSpec
    d_sae: int
    micro_batches: int = 1

    @property
    def sae_id(self) -> str:
        return self.spec.sae_id


@dataclass
class Pass:
    """One activation pass: SAEs trained from one stream, in stepping order."""

    lr: float
    saes: list[PlannedSae] = field(default_factory=list)
    peak_bytes: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def specs(self) -> list[SaeSpec]:
        return [s.spec for s in self.saes]


@dataclass
class Plan:
    passes: list[Pass]
    budget_bytes: int
    device_memory: int
    shape: ModelShape
    shape_source: str
    throughput: Throughput
    tokens: int
    n_steps: int

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    def micro_batches(self) -> dict[str, int]:
        return {s.sae_id: s.micro_batches for p in self.passes for s in p.saes}


class Estimator:
    """Peak bytes and seconds of a pass for one config and model shape."""

    def __init__(self, cfg: TrainConfig, shape: ModelShape, throughput: Throughput):
        fields = cfg.runner_fields()
        self.cfg, self.shape, self.tp = cfg, shape, throughput
        self.batch = int(fields.get("train_batch_size_tokens", 4096))
        self.tokens = int(fields["training_tokens"])
        self.buffer_rows = int(fields.get("n_batches_in_buffer", 20)) * WINDOW_POSITIONS
        self.prompts = int(fields.get("store_batch_size_prompts", 32))
        self.aux = float(cfg.sae_options.get("aux_loss_coefficient", 1.0)) > 0
        self.lm_bytes = DTYPE_BYTES.get(cfg.model.dtype, 4)

    def blocks(self, sae: PlannedSae) -> tuple[str, int]:
        """``(hook, blocks run)`` of one SAE: its layer's hook and the forward's depth."""
        hook, block = resolve_hook(self.cfg.layer_of(sae.spec), self.shape.n_layers)
        return hook, block + 1

    def fixed(self, saes: list[PlannedSae] | None = None) -> dict[str, int]:
        s, d = self.shape, self.shape.d_model
        hooks = max(1, len({self.blocks(x)[0] for x in saes or []}))
        ctx = WINDOW_POSITIONS + 1
        forward = self.prompts * ctx * (3 * s.d_mlp + 4 * d) * self.lm_bytes
        forward += self.prompts * s.n_heads * ctx * ctx * 4 * 2
        return {
            "model": s.n_params * self.lm_bytes,
            "lm_forward": forward,
            "buffer": int(BUFFER_FACTOR * self.buffer_rows * d * 4 * hooks),
        }

    def persistent(self, sae: PlannedSae) -> int:
        d = self.shape.d_model
        return 4 * (2 * d * sae.d_sae + sae.d_sae + d) * 4 + 3 * sae.d_sae * 8

    def step(self, sae: PlannedSae) -> int:
        rows = self.batch / sae.micro_batches
        return int(
            STEP_DENSE[self.aux] * rows * sae.d_sae * 4
            + STEP_INPUT * self.batch * self.shape.d_model * 4
        )

    def kept(self, sae: PlannedSae) -> int:
        rows = self.batch / sae.micro_batches
        return int(KEPT_DENSE * rows * sae.d_sae * 4 + KEPT_INPUT * rows * self.shape.d_model * 4)

    def peak(self, saes: list[PlannedSae]) -> tuple[int, dict[str, int]]:
        order = sorted(saes, key=lambda s: self.step(s) - self.kept(s))
        parts = self.fixed(saes)
        parts["sae_state"] = sum(self.persistent(s) for s in saes)
        kept, worst = 0, 0
        for s in order:
            worst = max(worst, kept + self.step(s))
            kept += self.kept(s)
        parts["step"] = worst
        return sum(parts.values()), parts

    def seconds(self, saes: list[PlannedSae]) -> float:
        d = self.shape.d_model
        depth = max((self.blocks(s)[1] for s in saes), default=self.shape.n_layers)
        lm = self.shape.forward_flops(depth) * self.tokens / self.tp.lm_peak_flops
        per_token = sum((18 if self.aux else 12) * d * s.d_sae for s in saes)
        sae = per_token * self.tokens / self.tp.sae_peak_flops
        return (lm + sae) / self.tp.efficiency


def plan(
    cfg: TrainConfig,
    device_memory: int,
    *,
    specs: list[SaeSpec] | None = None,
    shape: ModelShape | None = None,
    throughput: Throughput | None = None,
) -> Plan:
    """Pack ``specs`` (default: the whole grid) into passes that fit ``device_memory`` bytes.

    Raises :class:`UserError` naming the SAE whose pass cannot fit even alone and split
    ``MAX_SPLIT`` ways.
    """
    shape_source = "given"
    if shape is None:
        shape, shape_source = model_shape(cfg)
    tp = throughput or Throughput.default(
        cfg.model.device, cfg.model.dtype, getattr(cfg.model, "sae_autocast", False)
    )
    check_layers_fit(cfg, shape.n_layers)  # a layer outside the model: one line, before anything runs
    est = Estimator(cfg, shape, tp)
    budget = int(device_memory * HEADROOM)
    cap = cfg.max_saes_per_pass
    by_lr: dict[float, list[SaeSpec]] = {}
    for s in specs if specs is not None else cfg.specs():
        by_lr.setdefault(s.lr, []).append(s)
    passes: list[Pass] = []
    for lr, group in by_lr.items():
        mine: list[Pass] = []
        for spec in sorted(group, key=lambda s: -s.expansion):
            sae = PlannedSae(spec, spec.expansion * shape.d_model)
            if not any(_try_add(est, p, sae, budget, cap) for p in mine):
                p = Pass(lr)
                if not _try_add(est, p, sae, budget, cap):
                    most = max_split(est.batch)
                    _, parts = est.peak([PlannedSae(spec, sae.d_sae, most)])
                    need = sum(parts.values())
                    raise UserError(
                        f"pass lr={lr:g} [{spec.sae_id}]: needs {need / GiB:.1f} GiB alone with "
                        f"its "
                        f"step split {most} ways (model {parts['model'] / GiB:.1f}, SAE state "
                        f"{parts['sae_state'] / GiB:.1f}, step {parts['step'] / GiB:.1f} GiB); "
                        f"expected "
                        f"<= {budget / GiB:.1f} GiB ({HEADROOM:.0%} of the device's "
                        f"{device_memory / GiB:.1f} GiB): use a larger device or a smaller batch"
                    )
                mine.append(p)
        passes += mine
    for p in passes:
        p.saes.sort(key=lambda s: est.step(s) - est.kept(s))  # SAELens steps them in this order
        p.peak_bytes, p.parts = est.peak(p.saes)
        p.seconds = est.seconds(p.saes)
    return Plan(
        passes,
        budget,
        device_memory,
        shape,
        shape_source,
        tp,
        est.tokens,
        math.ceil(est.tokens / est.batch),
    )


def max_split(batch: int) -> int:
    """The most micro-batches a step of ``batch`` tokens is cut into."""
    m = 1
    while m * 2 <= MAX_SPLIT and batch % (m * 2) == 0 and batch // (m * 2) >= MIN_ROWS:
        m *= 2
    return m


def _try_add(est: Estimator, p: Pass, sae: PlannedSae, budget: int, cap: int | None) -> bool:
    """Add ``sae`` to pass ``p`` with the fewest micro-batches that fit; False if none does."""
    if cap is not None and len(p.saes) >= cap:
        return False
    m, most = 1, max_split(est.batch)
    while m <= most:
        if est.peak([*p.saes, PlannedSae(sae.spec, sae.d_sae, m)])[0] <= budget:
            sae.micro_batches = m
            p.saes.append(sae)
            return True
        m *= 2
    return False


def device_memory(device: str, flag: str | None, held: int = 0) -> int:
    """Bytes the plan may fill: the flag, else free CUDA memory, else available RAM (+ ``held``:
    bytes of a model this process already loaded, which the plan counts itself)."""
    if flag is not None:
        return parse_size(flag)
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index or 0
            # free + what this process already holds (its model counts in the plan itself)
            return int(torch.cuda.mem_get_info(index)[0] + torch.cuda.memory_reserved(index))
    return available_ram() + held


def available_ram() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _fmt_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_plan(pl: Plan, steps: int = 1) -> str:
    """The plan as lines: one per pass, then the totals and the assumptions."""
    s = pl.shape
    lines = [
        (
            f"model: {s.n_layers} blocks, d_model {s.d_model}, d_mlp {s.d_mlp}, vocab {s.d_vocab} "
            f"({s.n_params / 1e9:.2f}B params; {pl.shape_source})"
        ),
        (
            f"device memory {pl.device_memory / GiB:.1f} GiB, "
            f"plan budget {pl.budget_bytes / GiB:.1f} "
            f"GiB ({HEADROOM:.0%}); {pl.tokens:,} tokens = {pl.n_steps:,} steps per pass"
        ),
    ]
    for i, p in enumerate(pl.passes, 1):
        saes = ", ".join(
            s.sae_id + (f" (split {s.micro_batches})" if s.micro_batches > 1 else "")
            for s in p.saes
        )
        parts = ", ".join(f"{k} {v / GiB:.1f}" for k, v in p.parts.items())
        lines.append(f"pass {i}/{len(pl.passes)} lr={p.lr:g}: {len(p.saes)} SAEs [{saes}]")
        lines.append(
            f"    peak {p.peak_bytes / GiB:.1f} GiB ({parts} GiB); ~{_fmt_time(p.seconds)}"
        )
    lines.append(
        f"total: {len(pl.passes)} passes x {steps} checkpoint(s), "
        f"~{_fmt_time(pl.seconds * steps)} (train only; {pl.throughput.note})"
    )
    return "\n".join(lines)
