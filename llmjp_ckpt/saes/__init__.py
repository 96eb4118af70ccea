"""The SAE stage: per-token normalisation (a registered SAELens architecture), training, metrics, grids."""
