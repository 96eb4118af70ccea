"""Checkpoints as TransformerLens models: the model registry and the TransformerLens adapter."""
