"""The toy world: a generated bilingual corpus and a tiny LLM-jp-shaped model trained on it.

``make_toy(out_dir, quick=False, seed=0)`` writes::

    out_dir/corpus/{ja/ja_wiki,en/en_wiki}/train_0.jsonl.gz   llm-jp-corpus v3 layout
    out_dir/concepts.json       planted truth: every form, its concept, category, language, pieces;
                                each concept's language-neutral tag
    out_dir/tokenizer/          HF tokenizer files (LlamaTokenizerFast, add_bos_token true)
    out_dir/checkpoints/iter_{step:07d}/   HF LlamaForCausalLM (safetensors) + tokenizer files
    out_dir/train_log.json      {"checkpoints": [{"step", "loss", ..., "signals"}]}
    out_dir/toy.json            the config, steps, chosen layer (1-based) and its hook
    out_dir/planted_timeline.json   per checkpoint: bilingual / monolingual concepts, grouped
                                categories (:mod:`llmjp_ckpt.toy.timeline`)
"""

from llmjp_ckpt.toy.build import make_toy
from llmjp_ckpt.toy.config import ToyConfig, default_config, parse_seed, quick_config

__all__ = ["ToyConfig", "default_config", "make_toy", "parse_seed", "quick_config"]
