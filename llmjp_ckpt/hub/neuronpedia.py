"""Neuronpedia export: sae-dashboard's Neuronpedia runner on our SAEs, model and test windows.

``export_neuronpedia(run)`` writes, per SAE, the files sae-dashboard 0.8's
``NeuronpediaRunner.run`` writes (``batch-<N>.json`` feature files, ``run_settings.json``,
``skipped_indexes.json``) under ``RUN/exports/neuronpedia/iter_XXXXXXX/<sae_id>/``. Every token
string in them comes from :class:`llmjp_ckpt.tokens.TokenText` (readable Japanese, byte pieces
merged, no ``▁`` and no ``<0xNN>``), never from the raw vocabulary.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic, config
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder, sae_folders, step_dir
from llmjp_ckpt.tokens import TokenText

STAGE = "export-neuronpedia"
ModelLoader = Callable[[int], Any]


@dataclass(frozen=True)
class NeuronpediaExportConfig:
    """What the export computes (recorded in the manifest)."""

    n_features_at_a_time: int = 128
    """Features per ``batch-<N>.json`` file (sae-dashboard's ``n_features_at_a_time``)."""
    max_windows: int | None = None
    """Test windows the examples are drawn from (None: the whole test split)."""
    minibatch_windows: int = 32
    """Windows per forward pass (sae-dashboard's ``n_prompts_in_forward_pass``)."""
    device: str = "cpu"
    """Device for the model and the SAE."""

    def __post_init__(self) -> None:
        if self.n_features_at_a_time < 1 or self.minibatch_windows < 1:
            raise UserError("n_features_at_a_time, minibatch_windows: expected integers >= 1")
        if self.max_windows is not None and self.max_windows < 1:
            raise UserError(f"max_windows {self.max_windows}: expected an integer >= 1 or None")


@contextlib.contextmanager
def _token_text_converter(tt: TokenText) -> Iterator[None]:
    """sae-dashboard's converter, each example's token strings rebuilt by ``tt`` from its ids."""
    from sae_dashboard.neuronpedia import neuronpedia_converter as npc
    from sae_dashboard.neuronpedia import neuronpedia_runner as npr

    base = npc.NeuronpediaConverter

    class TokenTextConverter(base):  # type: ignore[misc, valid-type]
        # Upstream builds an example's strings one id at a time (to_str_tokens_safe), so a
        # character whose UTF-8 bytes span several byte-fallback pieces can never be rebuilt;
        # the whole window's text comes from TokenText.display instead.
        @staticmethod
        def _create_activation(sequence: Any, *args: Any, **kwargs: Any) -> Any:
            activation = base._create_activation(sequence, *args, **kwargs)
            activation.tokens = tt.display([int(t) for t in sequence.token_ids], hide_bos=False)
            return activation

    # The converter calls its own static methods by class name and the runner imports that
    # name, so the subclass is seen only with the name rebound in both modules, for this run.
    saved = npc.NeuronpediaConverter, npr.NeuronpediaConverter
    npc.NeuronpediaConverter = npr.NeuronpediaConverter = TokenTextConverter
    try:
        yield
    finally:
        npc.NeuronpediaConverter, npr.NeuronpediaConverter = saved


def _runner_class() -> type:
    from sae_dashboard.neuronpedia.neuronpedia_runner import NeuronpediaRunner

    class LlmjpNeuronpediaRunner(NeuronpediaRunner):  # type: ignore[misc, valid-type]
        """``NeuronpediaRunner`` on objects we hand in; ``run()`` is upstream's, unchanged."""

        # Upstream __init__ loads the SAE and the model by name and streams a Hugging Face
        # dataset; we pass our SAE (custom architecture), checkpoint model and test windows.
        def __init__(self, cfg: Any, sae: Any, model: Any, tokens: torch.Tensor,
                     token_text: TokenText, hook_name: str, layer: int, model_id: str):
            self.cfg = cfg
            self.sae, self.model, self.token_text = sae, model, token_text
            self._tokens = tokens
            self.device_count = 1
            self.model_id, self.layer, self.hook_name = model_id, layer, hook_name
            cfg.model_id, cfg.layer = model_id, layer
            self.np_sae_id_suffix = cfg.np_sae_id_suffix
            self.activations_store = None  # run() deletes it; our windows need none
            self.cached_activations_dir = None  # upstream caches under ./cached_activations
            self.vocab_dict = self.get_vocab_dict()

        def get_tokens(self) -> torch.Tensor:
            """The run's test windows (upstream samples and pickles a dataset's)."""
            return self._tokens

        def get_vocab_dict(self) -> dict[int, str]:
            """Id -> text through TokenText (upstream reads raw vocabulary keys: ▁, <0xNN>)."""
            n = int(self.model.cfg.d_vocab)
            return {i: self.token_text.single_text(i) for i in range(n)}

    return LlmjpNeuronpediaRunner


@contextlib.contextmanager
def _special_ids_set(tokenizer: Any) -> Iterator[None]:
    """For the run, a missing pad / EOS id stands in as the BOS id (restored afterwards)."""
    # run() passes {pad, bos, eos} ids as ignore_tokens and torch.tensor fails on a None
    # (a tokenizer without a pad token): the BOS id, ignored anyway, is the harmless stand-in.
    if tokenizer.bos_token_id is None:
        raise UserError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')}: no BOS token "
                        "(expected one: every window starts with BOS)")
    missing = [n for n in ("pad_token", "eos_token") if getattr(tokenizer, n + "_id") is None]
    saved = {n: getattr(tokenizer, n) for n in missing}
    for name in missing:
        setattr(tokenizer, name, tokenizer.bos_token)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(tokenizer, name, value)


def export_sae(sae_dir: Path, model: Any, tokens: torch.Tensor, tt: TokenText, out: Path,
               cfg: NeuronpediaExportConfig, *, sae_set: str, suffix: str) -> list[Path]:
    """One SAE's Neuronpedia files in ``out`` (written whole: a temporary folder renamed)."""
    from sae_dashboard.neuronpedia.neuronpedia_runner_config import NeuronpediaRunnerConfig

    from llmjp_ckpt.site.feature_pages import _fold_free, _stable_top_activations
    from llmjp_ckpt.weights import load_sae

    if getattr(model, "tokenizer", None) is None:  # run() reads its pad / BOS / EOS ids
        raise UserError(f"{sae_dir}: the model has no tokenizer (expected one loaded with it)")
    sae = _fold_free(load_sae(sae_dir, device=cfg.device))
    meta = config.read_json(sae_dir / "cfg.json").get("metadata", {})
    hook = meta.get("hook_name")
    match = re.search(r"blocks\.(\d+)\.", hook or "")
    if not match:
        raise UserError(f"{sae_dir / 'cfg.json'}: metadata.hook_name {hook!r}: "
                        "expected a TransformerLens hook like blocks.11.hook_resid_post")
    with atomic.atomic_dir(out) as tmp:
        np_cfg = NeuronpediaRunnerConfig(
            sae_set=sae_set, sae_path=str(sae_dir), outputs_dir=str(tmp),
            np_set_name=sae_set, np_sae_id_suffix=suffix, from_local_sae=True,
            huggingface_dataset_path="data/test", n_prompts_total=int(tokens.shape[0]),
            n_tokens_in_prompt=int(tokens.shape[1]),
            n_prompts_in_forward_pass=cfg.minibatch_windows,
            n_features_at_a_time=cfg.n_features_at_a_time, model_dtype="float32",
            sae_dtype="float32", sae_device=cfg.device, model_device=cfg.device,
            activation_store_device=cfg.device, shuffle_tokens=False)
        runner = _runner_class()(np_cfg, sae, model, tokens.to(cfg.device), tt, hook,
                                 int(match.group(1)), str(meta.get("model_name") or "unknown"))
        with (_token_text_converter(tt), _special_ids_set(model.tokenizer),
              _stable_top_activations()):
            runner.run()
        settings = tmp / "run_settings.json"
        if settings.exists():  # upstream records the folder it wrote to: the temporary one
            data = config.read_json(settings)
            data["outputs_dir"] = str(out)
            atomic.write_json(settings, data)
    return sorted(out.glob("*.json"))


def export_neuronpedia(run_dir: str | Path, out: str | Path | None = None,
                       cfg: NeuronpediaExportConfig | None = None, *,
                       model_loader: ModelLoader | None = None,
                       token_text: TokenText | None = None, force: bool = False) -> Path:
    """Every SAE of the run exported for Neuronpedia; returns the output folder.

    Default output ``RUN/exports/neuronpedia/``, one ``iter_XXXXXXX/<sae_id>/`` folder per SAE.
    """
    from llmjp_ckpt.features.analyze import FeaturesConfig, default_model_loader, load_test_tokens
    from llmjp_ckpt.saes.dead import weights_hash
    from llmjp_ckpt.site.inputs import resolve_token_text

    run = Path(run_dir)
    cfg = cfg or NeuronpediaExportConfig()
    rf = RunFolder(run)
    saes = sae_folders(run)
    if not saes:
        raise UserError(f"{run / 'saes'}: no finished SAEs (run `llmjp-ckpt train` first)")
    out_dir = Path(out) if out is not None else run / "exports" / "neuronpedia"
    hashes = {f"{step_dir(s)}/{sid}": weights_hash(folder) for s, sid, folder in saes}
    stage_cfg = {**asdict(cfg), "out": str(out_dir), "sae_weights": hashes}
    with rf.stage(STAGE, stage_cfg, force=force, outputs=[out_dir]) as st:
        if st.skipped:
            return out_dir
        tokens = load_test_tokens(run, cfg.max_windows)
        files: list[Path] = []
        models: dict[int, Any] = {}
        for step, sae_id, folder in saes:
            if step not in models:
                models.clear()  # one checkpoint in memory at a time
                loader = model_loader or default_model_loader(run, FeaturesConfig(), folder)
                models[step] = loader(step)
            model = models[step]
            tt = resolve_token_text(rf, token_text, model)
            files += export_sae(folder, model, tokens, tt, out_dir / step_dir(step) / sae_id, cfg,
                                sae_set=f"llmjp-ckpt-{sae_id}", suffix=step_dir(step))
        st.info.update(n_saes=len(saes), n_files=len(files), out=str(out_dir))
    return out_dir
