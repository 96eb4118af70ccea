"""LLM-jp-3 checkpoints as TransformerLens ``HookedTransformer`` models.

TransformerLens 2.17 rejects unknown names and local paths, routes any name containing
"llama" to hard-coded configs, ignores ``rope_theta``, and supports checkpoints only for
Pythia, stanford-crfm and NeelNanda models. We extend it through its own seams: the module
globals of ``transformer_lens.loading_from_pretrained`` that ``HookedTransformer.from_pretrained``
calls (``get_pretrained_model_config``, ``convert_hf_model_config``, ``get_checkpoint_labels``,
``get_pretrained_state_dict``) are wrapped so that registered LLM-jp names and local LLM-jp-shaped
folders resolve to the right checkpoint, and every other model goes to the originals untouched.
After ``import llmjp_ckpt``::

    HookedTransformer.from_pretrained_no_processing("llm-jp/llm-jp-3-1.8b", checkpoint_value=1000)
"""

from __future__ import annotations

import contextvars
import copy
import functools
import gc
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.models.registry import (
    ModelEntry,
    discover_steps,
    hub_revision_steps,
    load_registry,
    step_path,
)

SUPPORTED_ARCHITECTURE = "LlamaForCausalLM"
# Architectures whose weights TransformerLens 2.17 converts (get_pretrained_state_dict's list,
# causal LMs only): a local checkpoint folder of one of these loads through TransformerLens'
# own config and weight conversion; Llama goes through tl_config_dict (rope_theta honoured).
TL_ARCHITECTURES = (
    "GPT2LMHeadModel", "GPTNeoForCausalLM", "OPTForCausalLM", "GPTJForCausalLM",
    "GPTNeoXForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "BloomForCausalLM",
    "Qwen2ForCausalLM", "Qwen3ForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM",
    "GemmaForCausalLM", "Gemma2ForCausalLM",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def study_layer_hook(layer: int, n_layers: int | None = None) -> str:
    """The hook of the study's 1-based ``--layer``: the output of that block.

    The study's "layer 12" hooks the output of ``model.layers[11]`` — HF ``hidden_states[12]`` —
    which is TransformerLens's ``blocks.11.hook_resid_post``.
    """
    if layer < 1 or (n_layers is not None and layer > n_layers):
        raise UserError(
            f"layer {layer} is out of range: expected 1..{n_layers or 'n_layers'} (1-based, the output of that block)"
        )
    return f"blocks.{layer - 1}.hook_resid_post"


@dataclass(frozen=True)
class Resolved:
    """Where one checkpoint of a model lives."""

    name: str
    step: int | None
    local_dir: Path | None = None
    hub_repo: str | None = None
    revision: str | None = None

    @property
    def location(self) -> str:
        return str(self.local_dir) if self.local_dir else f"{self.hub_repo}@{self.revision}"


# ---------------------------------------------------------------------------------------------
# Resolution: registered name (+ step) or local folder -> Resolved


_LOCAL: dict[str, Path] = {}  # registered local folders, by the name TL sees
_OPTIONS: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("llmjp_options", default=MappingProxyType({}))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, ModelEntry]:
    """The registered models (read once from ``configs/models``)."""
    return load_registry()


def available_steps(entry: ModelEntry, checkpoint_root: str | Path | None = None) -> list[int]:
    """Steps that can be loaded: the root's folders when a local root is in force, else the registry's."""
    root = entry.root(checkpoint_root)
    if root is not None:
        return discover_steps(root)
    if entry.steps == "transformer_lens":
        return tl_checkpoint_steps(entry.name)
    if entry.steps == "hub_refs":
        return sorted(hub_revision_steps(entry)[0])
    if isinstance(entry.steps, str):
        raise UserError(
            f"model {entry.name}: steps are 'discover' but no local root is set ({entry.root_env} or local_root)"
        )
    return list(entry.steps)


def resolve(
    name: str,
    step: int | None = None,
    index: int | None = None,
    checkpoint_root: str | Path | None = None,
) -> Resolved:
    """Resolve a registered name and step (or index) to a local folder or a hub revision."""
    if name in _LOCAL:
        return Resolved(name=name, step=step, local_dir=_LOCAL[name])
    models = registry()
    if name not in models:
        raise UserError(
            f"unknown model {name!r}: expected a registered name "
            f"({', '.join(sorted(models))}) or a local checkpoint folder"
        )
    entry = models[name]
    root = entry.root(checkpoint_root)
    steps = available_steps(entry, checkpoint_root)
    if index is not None:
        if not -len(steps) <= index < len(steps):
            raise UserError(f"checkpoint_index {index} is out of range for {name}: {len(steps)} checkpoints {steps}")
        step = steps[index]
    if root is not None:
        if step is None:
            if not steps:
                raise UserError(f"checkpoint root {root} holds no iter_XXXXXXX folders")
            step = steps[-1]
        if step not in steps:
            raise UserError(f"step {step} is not in {root}: available steps are {steps}")
        return Resolved(name=name, step=step, local_dir=step_path(root, step))
    if entry.steps == "transformer_lens":
        if step is not None and step not in steps:
            raise UserError(f"step {step} is not a TransformerLens checkpoint of {name}: "
                            f"available steps are {steps}")
        return Resolved(name=name, step=step, hub_repo=entry.hub_repo or name,
                        revision=tl_revision(name, step))
    if not entry.hub_repo:
        raise UserError(f"model {name} has neither a local root nor a hub repo")
    if step is not None and steps and step not in steps and step != entry.final_step:
        raise UserError(f"step {step} is not registered for {name}: registered steps are {steps}")
    return Resolved(name=name, step=step, hub_repo=entry.hub_repo, revision=entry.hub_revision(step))


# ---------------------------------------------------------------------------------------------
# Validation: read the checkpoint's own config and refuse what TransformerLens cannot represent


def read_config(res: Resolved) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict, validated."""
    if res.local_dir is not None:
        path = res.local_dir / "config.json"
        if not res.local_dir.is_dir():
            raise UserError(f"checkpoint folder {res.local_dir} does not exist")
        if not path.exists():
            raise UserError(f"{path} is missing: expected a Hugging Face config.json in the checkpoint folder")
        cfg = read_json(path)
        if not isinstance(cfg, dict):
            raise UserError(f"{path}: expected a JSON object")
        where = str(path)
    else:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(res.hub_repo, revision=res.revision).to_dict()
        where = res.location
    validate_config(cfg, where, local=res.local_dir is not None)
    entry = registry().get(res.name)
    if entry is not None:  # a registered model's checkpoint must have its registered shape
        entry.check_shape(cfg, where)
    return cfg


def is_llama(cfg: dict[str, Any]) -> bool:
    return SUPPORTED_ARCHITECTURE in (cfg.get("architectures") or [])


def tl_checkpoint_steps(name: str) -> list[int]:
    """TransformerLens' own checkpoint list of a model it knows (Pythia, stanford-crfm)."""
    return list(_tl_checkpoint_steps(name))


@functools.cache
def _tl_checkpoint_steps(name: str) -> tuple[int, ...]:
    import transformer_lens.loading_from_pretrained as loading

    try:
        labels, kind = _ORIGINAL.get("labels", loading.get_checkpoint_labels)(name)
    except ValueError as exc:
        raise UserError(f"model {name}: TransformerLens has no checkpoints of it ({exc})") from None
    if kind != "step":
        raise UserError(f"model {name}: TransformerLens labels its checkpoints by {kind}, not step")
    return tuple(labels)


def tl_revision(name: str, step: int | None) -> str:
    """The hub revision TransformerLens loads for ``step`` (its own naming, for listings)."""
    if step is None:
        return "main"
    return f"checkpoint-{step}" if name.startswith("stanford-crfm/") else f"step{step}"


def validate_config(cfg: dict[str, Any], where: str, local: bool = False) -> None:
    """Refuse configs that TransformerLens would load as a silently different model.

    Llama (LLM-jp-3) is checked field by field; a ``local`` folder may also hold any single
    architecture of :data:`TL_ARCHITECTURES`, which TransformerLens converts itself.
    """
    archs = cfg.get("architectures") or []
    if local and len(archs) == 1 and archs[0] in TL_ARCHITECTURES:
        return  # TransformerLens' own conversion reads it (and refuses what it cannot map)
    if cfg.get("model_type") != "llama" or SUPPORTED_ARCHITECTURE not in archs:
        raise UserError(
            f"{where}: architecture {archs or cfg.get('model_type')!r} is not supported: expected "
            f"model_type 'llama' and {SUPPORTED_ARCHITECTURE} (LLM-jp-3 shape)"
        )
    missing = [
        k
        for k in (
            "hidden_size",
            "num_attention_heads",
            "num_hidden_layers",
            "intermediate_size",
            "vocab_size",
        )
        if k not in cfg
    ]
    if missing:
        raise UserError(f"{where}: config is missing {missing}")
    if cfg.get("rope_scaling"):
        raise UserError(
            f"{where}: rope_scaling={cfg['rope_scaling']!r} is not supported by TransformerLens 2.17: expected null"
        )
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key):
            raise UserError(f"{where}: {key}=true is not supported: expected false (LLM-jp-3 has no biases)")
    head_dim = cfg.get("head_dim")
    if head_dim is not None and head_dim != cfg["hidden_size"] // cfg["num_attention_heads"]:
        raise UserError(f"{where}: head_dim={head_dim} differs from hidden_size/num_attention_heads: not supported")
    if cfg.get("hidden_act", "silu") != "silu":
        raise UserError(f"{where}: hidden_act={cfg.get('hidden_act')!r} is not supported: expected 'silu'")


def tl_config_dict(cfg: dict[str, Any], res: Resolved) -> dict[str, Any]:
    """The HookedTransformerConfig fields for an LLM-jp-3 (Llama) config.

    Mirrors TransformerLens's own LlamaForCausalLM branch, which we cannot reach by name
    (any "llama" in a name or path takes its hard-coded branch), and adds ``rotary_base``
    from ``rope_theta``, which that branch drops.
    """
    d, h = cfg["hidden_size"], cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", h)
    return {
        "d_model": d,
        "d_head": d // h,
        "n_heads": h,
        "d_mlp": cfg["intermediate_size"],
        "n_layers": cfg["num_hidden_layers"],
        "n_ctx": cfg.get("max_position_embeddings", 4096),
        "eps": cfg.get("rms_norm_eps", 1e-5),
        "d_vocab": cfg["vocab_size"],
        "act_fn": cfg.get("hidden_act", "silu"),
        "n_key_value_heads": kv if kv != h else None,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": d // h,
        "rotary_base": float(cfg.get("rope_theta", 10000.0)),
        "final_rms": True,
        "gated_mlp": True,
        "original_architecture": SUPPORTED_ARCHITECTURE,
        "tokenizer_name": str(res.local_dir) if res.local_dir else res.hub_repo,
    }


def check_weights(folder: Path, trust_pickle: bool) -> bool:
    """True when safetensors weights exist; refuse pickle-only folders unless trusted."""
    if any(folder.glob("*.safetensors")):
        return True
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles and not trust_pickle:
        raise UserError(
            f"{folder}: weights only as pickle files {pickles}; refusing to unpickle. Convert them to "
            "safetensors, or pass --trust-pickle (trust_pickle=True) if you trust their origin"
        )
    if not pickles:
        raise UserError(f"{folder}: no weights found: expected model.safetensors (or shards)")
    return False


def load_hf_model(res: Resolved, dtype: torch.dtype, trust_pickle: bool = False) -> torch.nn.Module:
    """The Hugging Face model of one checkpoint (safetensors unless pickles are trusted)."""
    from transformers import AutoModelForCausalLM

    if res.local_dir is not None:
        safe = check_weights(res.local_dir, trust_pickle)
        try:
            model, info = AutoModelForCausalLM.from_pretrained(
                res.local_dir, dtype=dtype, use_safetensors=safe, output_loading_info=True)
        except (RuntimeError, ValueError) as exc:  # e.g. weight shapes that differ from config
            first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
            raise UserError(f"{res.local_dir}: the weights do not match config.json "
                            f"({first})") from None
        missing = info.get("missing_keys") or []
        if missing:  # HF would start these weights at random, silently
            raise UserError(f"{res.local_dir}: the weights do not match config.json "
                            f"({len(missing)} missing, e.g. {min(missing)}): expected weights of "
                            f"{(model.config.architectures or ['?'])[0]}")
        return model
    return AutoModelForCausalLM.from_pretrained(
        res.hub_repo, revision=res.revision, dtype=dtype, use_safetensors=not trust_pickle
    )


# ---------------------------------------------------------------------------------------------
# The TransformerLens seam


_ORIGINAL: dict[str, Any] = {}  # TransformerLens' own functions, before _install wraps them


def _is_ours(name: str) -> bool:
    """Names our seam handles; ``loader: transformer_lens`` entries go to TransformerLens as is."""
    entry = registry().get(name)
    return name in _LOCAL or (entry is not None and entry.loader == "adapter")


def _install() -> None:
    """Wrap the loading functions of TransformerLens once (idempotent)."""
    import transformer_lens.loading_from_pretrained as loading

    if getattr(loading, "_llmjp_installed", False):
        return
    orig_model_config = loading.get_pretrained_model_config
    orig_convert = loading.convert_hf_model_config
    orig_labels = loading.get_checkpoint_labels
    orig_state_dict = loading.get_pretrained_state_dict
    _ORIGINAL.update(labels=orig_labels, convert=orig_convert)

    def get_pretrained_model_config(model_name: str, *args: Any, **kwargs: Any):
        if not _is_ours(str(model_name)):
            return orig_model_config(model_name, *args, **kwargs)
        opts = _OPTIONS.get()
        res = resolve(
            str(model_name),
            kwargs.get("checkpoint_value"),
            kwargs.get("checkpoint_index"),
            opts.get("checkpoint_root"),
        )
        token = _OPTIONS.set({**opts, "resolved": res})
        try:
            # The original fills in checkpoint fields, dtype, device, fold_ln...; it reaches our
            # config through convert_hf_model_config and get_checkpoint_labels below.
            cfg = orig_model_config(model_name, *args, **kwargs)
        finally:
            _OPTIONS.reset(token)
        if cfg.from_checkpoint and cfg.checkpoint_value != res.step:
            raise UserError(f"internal: resolved step {res.step} differs from TransformerLens's {cfg.checkpoint_value}")
        return cfg

    def convert_hf_model_config(model_name: str, **kwargs: Any):
        res = _OPTIONS.get().get("resolved")
        if res is None or not _is_ours(str(model_name)):
            return orig_convert(model_name, **kwargs)
        cfg = read_config(res)
        if is_llama(cfg):
            return tl_config_dict(cfg, res)
        # another architecture in a local folder: TransformerLens' own conversion reads it
        try:
            # through a neutral link: TransformerLens sends any path containing "llama" to its
            # hard-coded Llama branch (STACK-NOTES), whatever the folder holds
            with tempfile.TemporaryDirectory() as tmp:
                link = Path(tmp) / "checkpoint"
                link.symlink_to(Path(str(res.local_dir)).resolve(), target_is_directory=True)
                converted = orig_convert(str(link))
            return {**converted, "tokenizer_name": str(res.local_dir)}
        except (NotImplementedError, AttributeError, KeyError, TypeError, ValueError) as exc:
            arch = (cfg.get("architectures") or ["?"])[0]
            raise UserError(f"{res.local_dir / 'config.json'}: not a {arch} config TransformerLens "
                            f"2.17 can read ({exc.__class__.__name__}: {exc})") from None

    def get_checkpoint_labels(model_name: str, **kwargs: Any):
        if not _is_ours(str(model_name)):
            return orig_labels(model_name, **kwargs)
        if model_name in _LOCAL:
            raise UserError(
                f"{model_name} is a single checkpoint folder: checkpoint_value/index need a registered model"
            )
        entry = registry()[model_name]
        return available_steps(entry, _OPTIONS.get().get("checkpoint_root")), "step"

    def get_pretrained_state_dict(
        official_model_name: str,
        cfg: Any,
        hf_model: Any = None,
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ):
        if not _is_ours(str(official_model_name)):
            return orig_state_dict(official_model_name, cfg, hf_model, dtype=dtype, **kwargs)
        opts = _OPTIONS.get()
        if hf_model is None:
            step = cfg.checkpoint_value if cfg.from_checkpoint else None
            res = resolve(str(official_model_name), step, None, opts.get("checkpoint_root"))
            hf_model = load_hf_model(res, dtype, opts.get("trust_pickle", False))
        for p in hf_model.parameters():
            p.requires_grad = False
        if cfg.original_architecture != SUPPORTED_ARCHITECTURE:
            # TransformerLens' own converter for that architecture; the copy of cfg without
            # from_checkpoint keeps it from fetching a checkpoint itself (it would go to the hub)
            plain = copy.copy(cfg)
            plain.from_checkpoint = False
            return orig_state_dict(official_model_name, plain, hf_model, dtype=dtype)
        state_dict = loading.convert_llama_weights(hf_model, cfg)
        # The state dict's tensors may share storage with hf_model; TL copies them into its own
        # parameters, after which nothing holds the HF model (load_model collects it).
        del hf_model
        return state_dict

    loading.get_pretrained_model_config = get_pretrained_model_config
    loading.convert_hf_model_config = convert_hf_model_config
    loading.get_checkpoint_labels = get_checkpoint_labels
    loading.get_pretrained_state_dict = get_pretrained_state_dict
    loading._llmjp_installed = True
    register_names([n for n, e in registry().items() if e.loader == "adapter"])


def register_names(names: list[str]) -> None:
    """Make names known to TransformerLens's official-name check."""
    import transformer_lens.loading_from_pretrained as loading

    for name in names:
        if name not in loading.OFFICIAL_MODEL_NAMES:
            loading.OFFICIAL_MODEL_NAMES.append(name)
        if name not in loading.MODEL_ALIASES:
            loading.MODEL_ALIASES[name] = [name]


def register_local(folder: str | Path) -> str:
    """Register a local checkpoint folder under its absolute path; return that name."""
    path = Path(folder).expanduser().resolve()
    name = str(path)
    _LOCAL[name] = path
    register_names([name])
    return name


def load_model(
    source: str | Path,
    step: int | None = None,
    *,
    checkpoint_root: str | Path | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_pickle: bool = False,
    **from_pretrained_kwargs: Any,
):
    """A ``HookedTransformer`` (no weight processing) for a registered name (+ step) or a local folder.

    Weights load as in Hugging Face (no folding or centring), so activations and logits equal
    the HF model's. Bad input raises :class:`UserError`.
    """
    from transformer_lens import HookedTransformer

    _install()
    source = str(source)
    entry = registry().get(source)
    tl_own = entry is not None and entry.loader == "transformer_lens"
    if tl_own and entry.root(checkpoint_root) is None:
        return _load_with_transformer_lens(entry, step, device=device, dtype=dtype,
                                           **from_pretrained_kwargs)
    if source in registry():
        register_names([source])  # an entry added after install ($LLMJP_CKPT_REGISTRY)
        name, kwargs = source, ({"checkpoint_value": step} if step is not None else {})
        res = resolve(name, step, None, checkpoint_root)
    else:
        p = Path(source).expanduser()
        if not p.exists():
            raise UserError(
                f"{source!r} is neither a registered model ({', '.join(sorted(registry()))}) nor an existing folder"
            )
        if step is not None:
            p = step_path(p, step) if not (p / "config.json").exists() else p
        if not (p / "config.json").exists():
            raise UserError(f"{p / 'config.json'} is missing: expected a Hugging Face checkpoint folder")
        name, kwargs = register_local(p), {}
        res = Resolved(name=name, step=step, local_dir=Path(name))
    read_config(res)  # validate before TransformerLens sees anything
    if res.local_dir is not None:
        check_weights(res.local_dir, trust_pickle)
    token = _OPTIONS.set({"checkpoint_root": checkpoint_root, "trust_pickle": trust_pickle})
    try:
        model = HookedTransformer.from_pretrained_no_processing(
            name, device=device, dtype=dtype, tokenizer=load_tokenizer(res), **kwargs, **from_pretrained_kwargs
        )
    finally:
        _OPTIONS.reset(token)
    gc.collect()
    return model


def _load_with_transformer_lens(entry: ModelEntry, step: int | None, **kwargs: Any):
    """A model TransformerLens knows, through its own loading path and nothing of ours:
    ``checkpoint_value`` for its checkpointed families (Pythia, stanford-crfm), a hub
    ``revision`` for the branches of a ``hub_refs`` entry."""
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer

    try:
        loading.get_official_model_name(entry.name)
    except ValueError:
        raise UserError(f"model {entry.name}: loader transformer_lens needs a name TransformerLens "
                        "knows (its OFFICIAL_MODEL_NAMES); use loader: adapter for others") from None
    res = resolve(entry.name, step)  # one clear line for a step that is not there
    if step is not None and entry.steps == "transformer_lens":
        kwargs["checkpoint_value"] = step
    elif step is not None:
        kwargs["revision"] = res.revision
    model = HookedTransformer.from_pretrained_no_processing(entry.name, **kwargs)
    gc.collect()
    return model


def load_tokenizer(res: Resolved | str | Path):
    """The checkpoint's own tokenizer, with BOS prepended as LLM-jp does."""
    from transformers import AutoTokenizer

    if isinstance(res, Resolved):
        src, kw = (str(res.local_dir), {}) if res.local_dir else (res.hub_repo, {"revision": res.revision})
    else:
        src, kw = str(res), {}
    try:
        tok = AutoTokenizer.from_pretrained(src, add_bos_token=True, **kw)
    except (OSError, ValueError) as exc:
        raise UserError(f"{src}: no usable tokenizer found ({str(exc).splitlines()[0]})") from None
    if tok.bos_token_id is None:
        raise UserError(f"{src}: tokenizer has no BOS token: expected <s> as LLM-jp-3's")
    return tok
