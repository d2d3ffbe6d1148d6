"""Full fine-tuning of a (pretrained) video encoder + a new linear classifier (``avlearn finetune``).

One file per concern:

- ``config.py``: :class:`FinetuneConfig` (``configs/finetune/*.yaml``);
- ``datasets.py``: the labelled training and evaluation clips;
- ``task.py``: :class:`FinetuneTask`, the cross-entropy step on the engine, and the optimiser groups;
- ``probe_head.py``: LP-FT's start, the classifier set to a linear probe of the frozen encoder;
- ``evaluate.py``: the test clips' logits and report;
- ``run.py``: :func:`finetune`, one run from ``--init`` to ``results.json``;
- ``cli.py``: :func:`main`, the command line.

The models, :class:`~avlearn.models.classifier.VideoClassifier` and (``modality: audio_visual``) the
fusion head :class:`~avlearn.models.classifier.AVClassifier`, are in :mod:`avlearn.models.classifier`.
"""

from avlearn.train.finetune.cli import main
from avlearn.train.finetune.config import FinetuneConfig, FinetuneEvalConfig
from avlearn.train.finetune.run import finetune
from avlearn.train.finetune.task import FinetuneTask

__all__ = ["FinetuneConfig", "FinetuneEvalConfig", "FinetuneTask", "finetune", "main"]
