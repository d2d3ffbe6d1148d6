"""Old home of the downstream pieces, kept for ``avlearn/train/finetune.py`` until it imports them
from where they live now; delete this module then.

* :class:`~avlearn.data.splits.DatasetConfig`, :func:`~avlearn.data.splits.load_split`: data.
* :func:`~avlearn.models.weights.load_weights` (was ``resolve_init``),
  :class:`~avlearn.models.weights.Weights` (was ``ResolvedInit``),
  :class:`~avlearn.models.weights.WeightsError` (was ``InitError``),
  :func:`~avlearn.models.weights.load_encoder`: models.
* :func:`~avlearn.eval.results.write_report`: eval.
"""

from __future__ import annotations

from avlearn.data.splits import DatasetConfig, load_split
from avlearn.eval.results import write_report
from avlearn.models.registry import ModelConfig
from avlearn.models.weights import Weights, WeightsError, load_encoder, load_weights

__all__ = ["DatasetConfig", "InitError", "load_encoder", "load_split", "resolve_init", "write_report"]

InitError = WeightsError


def resolve_init(init: str, scratch_model: ModelConfig) -> Weights:
    """``--init`` as :func:`~avlearn.models.weights.load_weights` reads it (``scratch`` allowed)."""
    return load_weights(init, scratch_model, what="--init")
