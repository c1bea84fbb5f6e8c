"""SPARTA: sparse-data augmented contrastive spatiotemporal embeddings of gridded weather data."""

__version__ = "0.1.0"
