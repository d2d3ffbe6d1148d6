"""Evaluation of pretrained audio-visual models (cross-modal retrieval)."""
