"""Subcommands of ``llmjp-ckpt`` (one module each)."""
