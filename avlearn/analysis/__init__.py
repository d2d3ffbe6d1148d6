"""Representation analysis: how similar are the blocks of two models (CKA)."""
