"""Data pipeline and training scripts for Asclepius-style models."""
