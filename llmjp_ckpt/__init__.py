"""llmjp-ckpt: sparse autoencoders across LLM-jp-3 training checkpoints.

Importing the package registers LLM-jp-3 checkpoints with TransformerLens (see
:mod:`llmjp_ckpt.models.adapter`).
"""

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.models.adapter import _install, load_model, load_tokenizer, study_layer_hook
from llmjp_ckpt.saes import normalisation  # noqa: F401  registers the token-norm SAE architecture

_install()

__all__ = ["UserError", "load_model", "load_tokenizer", "study_layer_hook"]
__version__ = "0.1.0"
