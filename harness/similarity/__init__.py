"""Representational and weight-space similarity between models, precomputed and cached by model hash."""
