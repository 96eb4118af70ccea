"""The training config (``configs/{paper,grid,demo}/*.yaml``): ours + SAELens runner fields.

``runner:`` holds any :class:`sae_lens.MultiSAETrainingRunnerConfig` field by name (the same
names as ``LanguageModelSAERunnerConfig``) except those this package sets itself
(:data:`RESERVED`); ``saes:`` is the grid of SAEs trained from one activation pass per
learning rate; ``sae_options:`` holds extra fields of the TopK training SAE config.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmjp_ckpt.data.config import build, read_yaml
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.saes.normalisation import MODES

# Runner fields set from our own fields; giving them under runner: is an error.
RESERVED = {
    "saes", "hook_names", "hook_head_indices", "model_name", "model_class_name", "dataset_path",
    "context_size", "seqpos_slice", "disable_concat_sequences", "output_path", "checkpoint_path",
    "resume_from_checkpoint", "lr", "evaluator", "streaming", "device", "dtype",
    "model_from_pretrained_kwargs", "seed",
}
# Defaults we choose where SAELens' would not suit (wandb only when asked; resumable checkpoints).
RUNNER_DEFAULTS: dict[str, Any] = {
    "logger": {"log_to_wandb": False},
    "n_checkpoints": 4,
    "save_final_checkpoint": False,
    "prepend_bos": True,
    "sequence_separator_token": None,
}


@dataclass
class ModelSpec:
    """Which model and which checkpoints."""

    source: str
    """Registered model name, a folder of ``iter_XXXXXXX`` checkpoints, or one HF checkpoint folder."""
    steps: list[int] | str | None = None
    """Checkpoint steps; ``"all"`` / ``"last"``: the ``iter_*`` folders found under the root; ``None``: one folder."""
    checkpoint_root: str | None = None
    """Local root of a registered model's ``iter_XXXXXXX`` folders (overrides the registry)."""
    device: str = "cpu"
    """Device of the model and the SAEs (``--device``; not part of any result hash)."""
    dtype: str = "float32"
    """The language model's dtype: float32, bfloat16 or float16 (``--dtype``; not hashed).
    SAEs always keep fp32 weights; TF32 is on for fp32 matmuls on CUDA."""
    sae_autocast: bool = False
    """Train the SAEs under bf16 autocast (SAELens' ``autocast``); weights stay fp32 (not hashed)."""

    def __post_init__(self) -> None:
        from llmjp_ckpt.devices import check_dtype

        check_dtype(self.dtype, "model.dtype")
    trust_pickle: bool = False
    """Allow pickle weights (``.bin``/``.pt``): unpickling runs code, so only for trusted files."""


@dataclass
class SaeGrid:
    """The SAEs trained for every checkpoint: the product of these lists."""

    expansion: list[int] = field(default_factory=lambda: [16])
    k: list[int] = field(default_factory=lambda: [32])
    lr: list[float] = field(default_factory=lambda: [1e-3])
    normalisation: list[str] = field(default_factory=lambda: ["scalar"])
    seeds: list[int] = field(default_factory=lambda: [0])
    """Init seeds of each grid cell, trained in the same activation pass (the seed baseline):
    seed 0 keeps the plain sae_id, seed s > 0 adds ``_s{s}``; all share one stream."""


@dataclass
class MetricsSpec:
    """Evaluation on the val split."""

    max_windows: int = 1024
    """Val windows evaluated (64 tokens each)."""
    batch_windows: int = 32
    """Windows per model forward."""
    dense_threshold: float = 0.1
    """A latent firing on more than this fraction of tokens counts as dense."""
    ce: bool = True
    """CE/KL with the SAE spliced in (metrics.splice_losses; BOS kept in splice and ablation)."""
    dead_eval_tokens: int = 1_048_576
    """Trained val positions a latent must never fire on to count as dead (capped at the split).

    At 32,768 latents and K = 32 a latent fires on K / d_sae = 1/1024 of tokens on average.
    Over 2**20 tokens a latent at 1e-5 (1% of the average; ~10 firings expected) is missed with
    probability e**-10 ≈ 5e-5, so "dead" means "fires on fewer than about one token in 10**6".
    Over 4,096 tokens (one small batch) a latent at the average rate is missed 2 times in 100
    and one at 1e-4 two times in three.
    """


@dataclass
class SaeSpec:
    """One SAE of the grid."""

    expansion: int
    k: int
    lr: float
    normalisation: str
    seed: int = 0
    """The grid seed (``saes.seeds``): 0 is the plain SAE, s > 0 its seed-s twin."""
    layer: int | str | None = None
    """Its entry of a layer sweep (``hook_layer`` given as a list); ``None``: the config's one layer."""

    @property
    def base_id(self) -> str:
        """The sae_id of this cell's seed-0 SAE (the seed baseline's reference); a layer sweep
        adds ``_L{layer}`` (``_L<hook name>`` for a hook given by name)."""
        layer = "" if self.layer is None else f"_L{self.layer}"
        return f"x{self.expansion}_k{self.k}_lr{self.lr:g}_{self.normalisation}{layer}"

    @property
    def sae_id(self) -> str:
        return self.base_id + (f"_s{self.seed}" if self.seed else "")

    def hash_fields(self) -> dict[str, Any]:
        """The fields an SAE's config hash covers (seed 0 as before seeds existed)."""
        out = dataclasses.asdict(self)
        if not self.seed:
            out.pop("seed")
        if self.layer is None:  # single-layer configs: the hash as before layer sweeps existed
            out.pop("layer")
        return out


HOOK_NAME_RE = re.compile(r"^blocks\.(\d+)\.hook_[a-z_]+$")


def check_layers(value: Any, where: str = "hook_layer") -> None:
    """A 1-based layer >= 1, a ``blocks.N.hook_…`` name, or a non-empty list of distinct ones."""
    entries = value if isinstance(value, list) else [value]
    if isinstance(value, list) and (not value or len({str(v) for v in value}) != len(value)):
        raise UserError(f"{where}={value!r}: expected a non-empty list of distinct layers or hook names")
    for v in entries:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise UserError(f"{where}={v!r}: expected a 1-based layer or a hook name such as blocks.11.hook_resid_post")
        if isinstance(v, int) and v < 1:
            raise UserError(f"{where}={v}: expected a 1-based layer >= 1")
        if isinstance(v, str) and not HOOK_NAME_RE.match(v):
            raise UserError(f"{where}={v!r}: expected an int (1-based layer) or a TransformerLens hook name "
                            "such as blocks.11.hook_resid_post")


def resolve_hook(layer: int | str, n_layers: int | None = None) -> tuple[str, int]:
    """``(hook name, 0-based block)`` of one ``hook_layer`` entry; a :class:`UserError` when the
    model has no such block."""
    if isinstance(layer, int):
        from llmjp_ckpt.models.adapter import study_layer_hook

        return study_layer_hook(layer, n_layers), layer - 1
    m = HOOK_NAME_RE.match(layer)
    block = int(m.group(1)) if m else -1
    if block < 0 or (n_layers is not None and block >= n_layers):
        raise UserError(f"hook_layer: {layer!r} is out of range: expected a hook of blocks 0..{(n_layers or 1) - 1}")
    return layer, block


def check_layers_fit(cfg: TrainConfig, n_layers: int) -> None:
    """Every ``hook_layer`` entry names a block of an ``n_layers``-block model (else UserError)."""
    for layer in cfg.layers():
        resolve_hook(layer, n_layers)


@dataclass
class TrainConfig:
    """A training run: model checkpoints, hook, SAE grid, SAELens runner fields, metrics."""

    model: ModelSpec
    hook_layer: int | str | list[int | str] = 12
    """1-based layer: the output of that block (``blocks.{layer-1}.hook_resid_post``), or a
    TransformerLens hook name (``blocks.N.hook_…``). A list is a layer sweep: the grid is
    trained at every entry from one forward pass per batch (SAELens' multi-hook store), and
    each SAE id ends in ``_L{entry}``."""
    saes: SaeGrid = field(default_factory=SaeGrid)
    sae_options: dict[str, Any] = field(default_factory=dict)
    """Extra fields of the TopK training SAE config (e.g. aux_loss_coefficient)."""
    runner: dict[str, Any] = field(default_factory=dict)
    """MultiSAETrainingRunnerConfig fields (see RESERVED for those set here)."""
    data: str = "data"
    """Prepared splits: a folder relative to RUN (or absolute) holding train/ and val/."""
    warm_start: bool = False
    """Initialise each checkpoint's SAE from the previous checkpoint's (SAE-Track style)."""
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    seed: int = 0
    """Seeds random, NumPy and torch before each SAE's init and the activation shuffles."""
    max_saes_per_pass: int | None = None
    """SAEs trained from one activation pass (MultiSAE); ``None``: all SAEs sharing a learning rate."""

    def __post_init__(self) -> None:
        check_layers(self.hook_layer)
        g = self.saes
        for name in ("expansion", "k", "lr", "normalisation"):
            if not getattr(g, name):
                raise UserError(f"saes.{name}: expected a non-empty list")
        for lr in g.lr:
            if not isinstance(lr, (int, float)) or lr <= 0:
                raise UserError(f"saes.lr={lr!r}: expected a learning rate > 0")
        for k in g.k:
            if not isinstance(k, int) or k < 1:
                raise UserError(f"saes.k={k!r}: expected an integer >= 1")
        for e in g.expansion:
            if not isinstance(e, int) or e < 1:
                raise UserError(f"saes.expansion={e!r}: expected an integer >= 1")
        seeds = g.seeds
        if (not seeds or len(set(seeds)) != len(seeds)
                or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in seeds)):
            raise UserError(f"saes.seeds={seeds!r}: expected a non-empty list of distinct "
                            "non-negative integers")
        for n in g.normalisation:
            if n not in MODES:
                raise UserError(f"saes.normalisation={n!r}: expected one of {', '.join(MODES)}")
        st = self.model.steps
        if isinstance(st, str) and st not in ("all", "last"):
            raise UserError(f"model.steps={st!r}: expected a list of steps, 'all' or 'last'")
        if isinstance(st, list) and (not st or any(not isinstance(s, int) or s < 0 for s in st)):
            raise UserError(f"model.steps={st!r}: expected a non-empty list of non-negative ints")
        if self.max_saes_per_pass is not None and self.max_saes_per_pass < 1:
            raise UserError(f"max_saes_per_pass={self.max_saes_per_pass}: expected >= 1 or null")
        self._check_runner()
        self._check_sae_options()

    def _check_runner(self) -> None:
        from sae_lens import MultiSAETrainingRunnerConfig

        names = {f.name for f in dataclasses.fields(MultiSAETrainingRunnerConfig)}
        for key in self.runner:
            if key == "seed":
                raise UserError("runner.seed: SAELens 6.54 never uses it: set the top-level seed:")
            if key in RESERVED:
                raise UserError(f"runner.{key}: set by llmjp-ckpt from the config's own fields: remove it")
            if key not in names:
                raise UserError(f"runner: unknown field {key!r}: expected a MultiSAETrainingRunnerConfig field")
        fields = self.runner_fields()
        rows = fields.get("n_batches_in_buffer", 20) * 64
        batch = fields.get("train_batch_size_tokens", 4096)
        if rows < batch:
            raise UserError(
                f"runner.n_batches_in_buffer={fields.get('n_batches_in_buffer', 20)}: SAELens' mixing buffer holds "
                f"n_batches_in_buffer x 64 trained positions = {rows} activations, "
                f"fewer than train_batch_size_tokens={batch}: "
                f"expected >= {-(-batch // 64)}"
            )
        tokens = self.runner.get("training_tokens", 0)
        if not isinstance(tokens, int) or tokens <= 0:
            raise UserError(f"runner.training_tokens={tokens!r}: expected a positive integer")
        steps = tokens // batch
        default = {f.name: f.default for f in dataclasses.fields(MultiSAETrainingRunnerConfig)}
        window = fields.get("dead_feature_window", default["dead_feature_window"])
        if not isinstance(window, int) or window < 1 or window >= steps:
            raise UserError(
                f"runner.dead_feature_window={window!r}: expected 1 <= window < the run's "
                f"{steps} steps (training_tokens / train_batch_size_tokens), else the TopK "
                "auxiliary loss never starts"
            )
        m = self.metrics
        if not isinstance(m.dead_eval_tokens, int) or m.dead_eval_tokens < 1:
            raise UserError(f"metrics.dead_eval_tokens={m.dead_eval_tokens!r}: "
                            "expected a positive integer")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise UserError(f"seed={self.seed!r}: expected a non-negative integer")

    def _check_sae_options(self) -> None:
        from llmjp_ckpt.saes.normalisation import TokenNormTopKTrainingSAEConfig

        names = {f.name for f in dataclasses.fields(TokenNormTopKTrainingSAEConfig)} - {
            "d_in",
            "d_sae",
            "k",
            "normalisation",
            "token_norm",
            "metadata",
        }
        for key in self.sae_options:
            if key not in names:
                raise UserError(f"sae_options: unknown field {key!r}: expected one of {', '.join(sorted(names))}")
        from llmjp_ckpt.saes.normalisation import B_DEC_INITS

        init = self.sae_options.get("b_dec_init", "zeros")
        if init not in B_DEC_INITS:
            raise UserError(f"sae_options.b_dec_init={init!r}: "
                            f"expected one of {', '.join(B_DEC_INITS)}")
        n = self.sae_options.get("b_dec_init_tokens", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UserError(f"sae_options.b_dec_init_tokens={n!r}: expected a positive integer")

    def specs(self) -> list[SaeSpec]:
        g = self.saes
        layers: list[int | str | None] = list(self.hook_layer) if self.is_sweep else [None]
        return [SaeSpec(e, k, float(lr), n, sd, layer) for layer, e, k, lr, n, sd in
                itertools.product(layers, g.expansion, g.k, g.lr, g.normalisation, g.seeds)]

    @property
    def is_sweep(self) -> bool:
        """``hook_layer`` is a list (a layer sweep: SAE ids carry the layer)."""
        return isinstance(self.hook_layer, list)

    def layers(self) -> list[int | str]:
        """The layers trained: ``hook_layer`` as a list."""
        return list(self.hook_layer) if isinstance(self.hook_layer, list) else [self.hook_layer]

    def layer_of(self, spec: SaeSpec) -> int | str:
        """The layer (1-based int or hook name) of one SAE of the grid."""
        return self.hook_layer if spec.layer is None else spec.layer  # type: ignore[return-value]

    def runner_fields(self) -> dict[str, Any]:
        """Runner fields with our defaults filled in (``logger`` as a dict)."""
        out = {**RUNNER_DEFAULTS, **self.runner}
        out["logger"] = {**RUNNER_DEFAULTS["logger"], **self.runner.get("logger", {})}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train config") -> TrainConfig:
        data = dict(data)
        if "model" not in data or not isinstance(data["model"], dict):
            raise UserError(f"{where}: model: expected a mapping with at least 'source'")
        data["model"] = build(ModelSpec, data["model"], f"{where}: model")
        if "saes" in data:
            data["saes"] = build(SaeGrid, data["saes"] or {}, f"{where}: saes")
        if "metrics" in data:
            data["metrics"] = build(MetricsSpec, data["metrics"] or {}, f"{where}: metrics")
        return build(cls, data, where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_yaml(path), str(path))
