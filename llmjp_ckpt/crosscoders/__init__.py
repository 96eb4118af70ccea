"""Crosscoders across checkpoints: one dictionary over N checkpoints, trained through SAELens."""
