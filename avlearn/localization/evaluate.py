"""``avlearn evaluate localization``: entry point; see :func:`avlearn.localization.cli.evaluate_main`."""

from __future__ import annotations

from avlearn.localization.cli import evaluate_main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """cIoU / AUC / pointing game of a checkpoint on a synthetic collection's split."""
    return evaluate_main(argv)
