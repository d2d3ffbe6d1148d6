"""AVID: audio-visual instance discrimination against memory banks (Morgado et al., CVPR 2021).

Each modality has a :class:`~avlearn.objectives.memory_bank.MemoryBank` with one entry per
training video. Cross-modal discrimination (the AVID "xmodal" variant) scores a video
embedding against the *audio* bank: the positive is the audio entry of the same instance,
the negatives are ``K`` sampled audio entries (and symmetrically audio vs the video bank).
With ``within_weight > 0`` the within-modal terms of the AVID "joint" variant are added
(video vs the video bank, audio vs the audio bank; positive = the instance's own entry).

Two losses over the same scores ``s = cos / temperature``:

* ``"nce"`` -- noise-contrastive estimation with uniform noise ``P_n = 1/N`` and a fixed
  partition function ``Z``, estimated once as ``Z = N * mean(exp(s_neg))`` over the first
  batch (averaged over processes) and then kept: ``P(data | s) = e^s / (e^s + K N^-1 Z)``;
  loss per anchor ``-mean_pos log P(data | s_pos) - sum_neg log(1 - P(data | s_neg))``.
* ``"softmax"`` -- InfoNCE over the positive and the ``K`` negatives; with several positives
  each one is classified against the shared negatives and the terms are averaged.

Terms are combined as ``xmodal_weight * (L_v2a + L_a2v) / 2 + within_weight * (L_v2v + L_a2a) / 2``.
AVID-CMA divides that by the sum of its coefficients (``normalize_weights: true``; ours uses the
weights as given by default, so a joint loss with weights 1 and 1 is twice the reference's).

Partition function: ours keeps one ``Z`` per direction, each estimated on its own first batch
(``partition: per_direction``, the default); AVID-CMA estimates one ``Z`` on the first batch of the
first term (``v2a``) and shares it across all terms (``partition: shared``).
Embeddings must be L2-normalised.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlearn.config import ConfigError
from avlearn.distributed import all_reduce_mean

from ._checks import (
    check_choice,
    check_index,
    check_memory,
    check_normalized,
    check_pair,
    check_positive_int,
    check_temperature,
    check_weight,
    require,
    upcast,
)
from .base import Objective, ObjectiveContext
from .memory_bank import MemoryBank

if TYPE_CHECKING:
    from avlearn.models.av import AVOutput

__all__ = [
    "DIRECTIONS",
    "LOSSES",
    "PARTITIONS",
    "AVIDConfig",
    "AVIDLoss",
    "avid_loss",
    "estimate_partition",
    "memory_discrimination_loss",
]

LOSSES = ("nce", "softmax")
PARTITIONS = ("per_direction", "shared")
DIRECTIONS = ("v2a", "a2v", "v2v", "a2a")  # anchor modality 2 memory modality


def estimate_partition(neg_logits: Tensor, num_items: int) -> Tensor:
    """NCE partition function ``Z = N * mean(exp(neg_logits))``, averaged over processes.

    Shape: ``neg_logits (B, K)`` -> ``()`` float32, detached.
    """
    with torch.no_grad():
        local = upcast(neg_logits.detach()).exp().mean()
        return all_reduce_mean(local) * num_items


def memory_discrimination_loss(
    anchor: Tensor,
    positives: Tensor,
    negatives: Tensor,
    *,
    temperature: float = 0.07,
    loss: str = "nce",
    num_items: int | None = None,
    partition: Tensor | float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One discrimination direction: anchors against their positive and negative memories.

    Shape: ``anchor (B, D)``, ``positives (B, P, D)``, ``negatives (B, K, D)`` -> scalar loss.
    ``num_items`` (N) is required for ``loss="nce"``; ``partition`` is the fixed ``Z`` (``None``:
    estimate it from these negatives, see :func:`estimate_partition`). Logs: ``loss``,
    ``pos_sim``/``neg_sim`` (mean cosine), ``acc`` (first positive beats every negative) and,
    for NCE, ``partition`` (the ``Z`` used).
    """
    check_temperature(temperature)
    check_choice("loss", loss, LOSSES)
    if anchor.dim() != 2:
        raise ValueError(f"anchor must be (B, D), got shape {tuple(anchor.shape)}")
    b, d = anchor.shape
    for name, mem in (("positives", positives), ("negatives", negatives)):
        if mem.dim() != 3 or mem.shape[0] != b or mem.shape[2] != d or mem.shape[1] < 1:
            raise ValueError(f"{name} must be ({b}, n >= 1, {d}), got shape {tuple(mem.shape)}")
    pos_sim = torch.einsum("bd,bpd->bp", anchor, positives.to(anchor.dtype))
    neg_sim = torch.einsum("bd,bkd->bk", anchor, negatives.to(anchor.dtype))
    pos_logits, neg_logits = upcast(pos_sim) / temperature, upcast(neg_sim) / temperature
    logs: dict[str, Tensor] = {}
    if loss == "nce":
        if num_items is None or num_items < 2:
            raise ValueError(f"num_items (bank size N >= 2) is required for loss='nce', got {num_items}")
        z = estimate_partition(neg_logits, num_items) if partition is None else partition
        z_t = torch.as_tensor(z, device=anchor.device).to(pos_logits.dtype)
        require(z_t > 0, "partition must be > 0",
                lambda: ValueError(f"partition must be > 0, got {float(z_t)}"))
        log_noise = math.log(neg_logits.shape[1] / num_items) + z_t.log()  # log(K * P_n * Z)
        per_anchor = F.softplus(log_noise - pos_logits).mean(1) + F.softplus(neg_logits - log_noise).sum(1)
        logs["partition"] = z_t.detach()
    else:
        lse_neg = torch.logsumexp(neg_logits, dim=1, keepdim=True)
        per_anchor = (torch.logaddexp(pos_logits, lse_neg) - pos_logits).mean(1)
    value = per_anchor.mean()
    with torch.no_grad():
        logs["loss"] = value.detach()
        logs["pos_sim"] = pos_sim.detach().float().mean()
        logs["neg_sim"] = neg_sim.detach().float().mean()
        logs["acc"] = (pos_sim[:, 0] > neg_sim.max(dim=1).values).float().mean()
    return value, logs


def combine_directions(
    terms: Mapping[str, tuple[Tensor, Tensor, Tensor]],
    *,
    xmodal_weight: float,
    within_weight: float,
    temperature: float,
    loss: str,
    num_items: int,
    partition: Mapping[str, Tensor | float] | None,
    normalize_weights: bool = False,
    shared_partition: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the directions in ``terms`` (``{"v2a": (anchor, pos, neg), ...}``).

    ``normalize_weights``: divide by ``xmodal_weight + within_weight`` (AVID-CMA).
    ``shared_partition``: one NCE ``Z`` for every term: any known one in ``partition``, else the
    one estimated on the first term's negatives (AVID-CMA); otherwise each direction has its own.
    Logs are prefixed with the direction (``"v2a/pos_sim"``); the unprefixed ``loss``,
    ``pos_sim`` and ``neg_sim`` average the cross-modal directions (the within-modal ones
    when only those are present).
    """
    total: Tensor | None = None
    logs: dict[str, Tensor] = {}
    scale = 1.0 / (xmodal_weight + within_weight) if normalize_weights else 1.0
    shared = next(iter((partition or {}).values()), None) if shared_partition else None
    for direction, (anchor, pos, neg) in terms.items():
        weight = xmodal_weight if direction in ("v2a", "a2v") else within_weight
        z = shared if shared_partition else None if partition is None else partition.get(direction)
        value, sub = memory_discrimination_loss(
            anchor, pos, neg, temperature=temperature, loss=loss, num_items=num_items, partition=z
        )
        if shared_partition and shared is None and "partition" in sub:
            shared = sub["partition"]
        term = value * (weight * scale / 2.0)
        total = term if total is None else total + term
        logs.update({f"{direction}/{key}": val for key, val in sub.items()})
    if total is None:
        raise ValueError("xmodal_weight and within_weight are both 0: no loss term left")
    summary = [d for d in ("v2a", "a2v") if d in terms] or [d for d in ("v2v", "a2a") if d in terms]
    for key in ("pos_sim", "neg_sim"):
        logs[key] = torch.stack([logs[f"{d}/{key}"] for d in summary]).mean()
    logs["loss"] = total.detach()
    return total, logs


def _check_bank_inputs(
    video_emb: Tensor,
    audio_emb: Tensor,
    video_memory: Tensor,
    audio_memory: Tensor,
    index: Tensor,
    negatives: Tensor,
) -> None:
    check_pair(video_emb, audio_emb)
    check_normalized("video_emb", video_emb)
    check_normalized("audio_emb", audio_emb)
    b, d = video_emb.shape
    check_memory("video_memory", video_memory, d)
    check_memory("audio_memory", audio_memory, d)
    if video_memory.shape != audio_memory.shape:
        raise ValueError(
            f"video_memory {tuple(video_memory.shape)} and audio_memory {tuple(audio_memory.shape)} "
            "must have the same shape"
        )
    n = video_memory.shape[0]
    check_index(index, b, n)
    if negatives.dim() != 2 or negatives.shape[0] != b or negatives.shape[1] < 1:
        raise ValueError(f"negatives must be ({b}, K >= 1) indices, got shape {tuple(negatives.shape)}")
    check_index(negatives.reshape(-1), negatives.numel(), n, name="negatives")


def avid_loss(
    video_emb: Tensor,
    audio_emb: Tensor,
    video_memory: Tensor,
    audio_memory: Tensor,
    index: Tensor,
    negatives: Tensor,
    *,
    temperature: float = 0.07,
    loss: str = "nce",
    xmodal_weight: float = 1.0,
    within_weight: float = 0.0,
    partition: Mapping[str, Tensor | float] | None = None,
    normalize_weights: bool = False,
    shared_partition: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """AVID loss of a batch against the (not yet updated) memory banks.

    Shape: ``video_emb, audio_emb (B, D)`` L2-normalised; ``video_memory, audio_memory (N, D)``;
    ``index (B,)`` the instances' bank rows; ``negatives (B, K)`` bank rows, shared by both
    modalities (never the instance itself: see :meth:`MemoryBank.sample_negatives`).
    ``partition`` maps a direction (``"v2a"``, ``"a2v"``, ``"v2v"``, ``"a2a"``) to its fixed NCE
    ``Z``; a missing direction is estimated from this batch (log ``"<dir>/partition"``).
    ``normalize_weights`` / ``shared_partition``: AVID-CMA's conventions (see
    :func:`combine_directions`). Returns ``(loss, logs)``; a term whose weight is 0 is not computed.
    """
    check_weight("xmodal_weight", xmodal_weight)
    check_weight("within_weight", within_weight)
    _check_bank_inputs(video_emb, audio_emb, video_memory, audio_memory, index, negatives)
    with torch.no_grad():
        v_self = upcast(video_memory.detach()[index]).unsqueeze(1)
        a_self = upcast(audio_memory.detach()[index]).unsqueeze(1)
        v_neg = upcast(video_memory.detach()[negatives])
        a_neg = upcast(audio_memory.detach()[negatives])
    terms: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    if xmodal_weight > 0:
        terms["v2a"] = (video_emb, a_self, a_neg)
        terms["a2v"] = (audio_emb, v_self, v_neg)
    if within_weight > 0:
        terms["v2v"] = (video_emb, v_self, v_neg)
        terms["a2a"] = (audio_emb, a_self, a_neg)
    return combine_directions(
        terms,
        xmodal_weight=xmodal_weight,
        within_weight=within_weight,
        temperature=temperature,
        loss=loss,
        num_items=video_memory.shape[0],
        partition=partition,
        normalize_weights=normalize_weights,
        shared_partition=shared_partition,
    )


_BANK_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class AVIDConfig:
    """The ``objective:`` section of ``name: avid``.

    Attributes:
        num_negatives: K negatives sampled from the bank per anchor.
        temperature: softmax / NCE temperature.
        momentum: memory-bank momentum (weight of the old entry).
        loss: ``nce`` (the paper) or ``softmax`` (InfoNCE over the K + 1 bank entries).
        xmodal_weight, within_weight: cross-modal and within-modal terms (AVID "xmodal" = 1, 0).
        bank_dtype: storage of the banks (``float16`` / ``bfloat16`` halve their memory).
        normalize_weights: divide the loss by ``xmodal_weight + within_weight`` (AVID-CMA: true;
            ours, the default: false).
        partition: NCE ``Z`` ``per_direction`` (ours, the default) or ``shared`` by all terms
            (AVID-CMA).
    """

    num_negatives: int = 1024
    temperature: float = 0.07
    momentum: float = 0.5
    loss: Literal["nce", "softmax"] = "nce"
    xmodal_weight: float = 1.0
    within_weight: float = 0.0
    bank_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    normalize_weights: bool = False
    partition: Literal["per_direction", "shared"] = "per_direction"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"objective.temperature must be > 0, got {self.temperature}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"objective.momentum must be in [0, 1), got {self.momentum}")
        if self.num_negatives < 1:
            raise ConfigError(f"objective.num_negatives must be >= 1, got {self.num_negatives}")
        if self.xmodal_weight < 0 or self.within_weight < 0 or self.xmodal_weight + self.within_weight == 0:
            raise ConfigError(
                f"objective.xmodal_weight ({self.xmodal_weight}) and objective.within_weight "
                f"({self.within_weight}) must be >= 0 and not both 0"
            )

    def bank_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the bank objectives' constructors."""
        return {"num_negatives": self.num_negatives, "temperature": self.temperature,
                "momentum": self.momentum, "loss": self.loss, "xmodal_weight": self.xmodal_weight,
                "within_weight": self.within_weight, "bank_dtype": _BANK_DTYPES[self.bank_dtype],
                "normalize_weights": self.normalize_weights, "shared_partition": self.partition == "shared"}


def _forget_host_copies(module: nn.Module, _incompatible: Any) -> None:
    assert isinstance(module, _BankObjective)
    module.forget_host_copies()


class _BankObjective(Objective):
    """Two memory banks plus the fixed NCE partition functions (buffer ``partition``, -1 = unset)."""

    partition: Tensor

    def __init__(
        self,
        num_items: int,
        dim: int,
        *,
        num_negatives: int,
        temperature: float,
        momentum: float,
        loss: str,
        xmodal_weight: float,
        within_weight: float,
        bank_dtype: torch.dtype,
        seed: int,
        normalize_weights: bool = False,
        shared_partition: bool = False,
    ) -> None:
        super().__init__()
        check_temperature(temperature)
        check_choice("loss", loss, LOSSES)
        check_positive_int("num_negatives", num_negatives)
        check_weight("xmodal_weight", xmodal_weight)
        check_weight("within_weight", within_weight)
        if xmodal_weight == 0 and within_weight == 0:
            raise ValueError("xmodal_weight and within_weight are both 0: no loss term left")
        self.video_bank = MemoryBank(num_items, dim, momentum, bank_dtype, seed=seed)
        self.audio_bank = MemoryBank(num_items, dim, momentum, bank_dtype, seed=seed + 1)
        self.num_items = num_items
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.loss = loss
        self.xmodal_weight = xmodal_weight
        self.within_weight = within_weight
        self.normalize_weights = normalize_weights
        self.shared_partition = shared_partition
        self.register_buffer("partition", torch.full((len(DIRECTIONS),), -1.0))
        used = (("v2a", "a2v") if xmodal_weight > 0 else ()) + (("v2v", "a2a") if within_weight > 0 else ())
        self._used = [DIRECTIONS.index(d) for d in used]
        self._host_z = [-1.0] * len(DIRECTIONS)  # host copy of ``partition``, see _host_partition
        self.register_load_state_dict_post_hook(_forget_host_copies)  # type: ignore[no-untyped-call]

    def forget_host_copies(self) -> None:
        """Read the buffers again at the next step (called after ``load_state_dict``)."""
        self._host_z = [-1.0] * len(DIRECTIONS)

    def _host_partition(self) -> list[float]:
        """``partition`` as a list, read from the buffer (a device sync) only while the ``Z`` of a
        direction this objective uses is not estimated (``> 0``): one that is never changes but
        by a load."""
        if not all(self._host_z[i] > 0 for i in self._used):
            self._host_z = self.partition.tolist()
        return self._host_z

    def partitions(self) -> dict[str, Tensor]:
        """The fixed NCE ``Z`` per direction, only those already estimated."""
        known = self._host_partition()
        return {d: self.partition[i] for i, d in enumerate(DIRECTIONS) if known[i] > 0}

    def _step_partitions(self) -> dict[str, Tensor]:
        """:meth:`partitions` for the loss; a softmax loss has none (and reads nothing back)."""
        return self.partitions() if self.loss == "nce" else {}

    def _store_partitions(self, logs: Mapping[str, Tensor]) -> None:
        if not any(f"{d}/partition" in logs for d in DIRECTIONS):
            return
        known = self._host_partition()
        with torch.no_grad():
            for i, d in enumerate(DIRECTIONS):
                key = f"{d}/partition"
                if key in logs and known[i] <= 0:
                    self.partition[i] = logs[key].to(self.partition)

    @torch.no_grad()
    def update_memory(self, video_emb: Tensor, audio_emb: Tensor, index: Tensor) -> None:
        """Momentum-update both banks with this batch, gathered from every process."""
        self.video_bank.update(index, video_emb.detach())
        self.audio_bank.update(index, audio_emb.detach())

    def after_finite_step(self, out: AVOutput, index: Tensor) -> None:
        self.update_memory(out.video_emb, out.audio_emb, index)

    def avid_scores(
        self, video_emb: Tensor, audio_emb: Tensor, index: Tensor, negatives: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """AVID's loss against the banks as they are (``negatives (B, K)`` default: sampled)."""
        if negatives is None:
            negatives = self.video_bank.sample_negatives(index, self.num_negatives, generator)
        value, logs = avid_loss(
            video_emb,
            audio_emb,
            self.video_bank.weight,
            self.audio_bank.weight,
            index,
            negatives,
            temperature=self.temperature,
            loss=self.loss,
            xmodal_weight=self.xmodal_weight,
            within_weight=self.within_weight,
            partition=self._step_partitions(),
            normalize_weights=self.normalize_weights,
            shared_partition=self.shared_partition,
        )
        self._store_partitions(logs)
        return value, logs

    def extra_repr(self) -> str:
        return (
            f"num_negatives={self.num_negatives}, temperature={self.temperature}, loss={self.loss!r}, "
            f"xmodal_weight={self.xmodal_weight}, within_weight={self.within_weight}, "
            f"normalize_weights={self.normalize_weights}, shared_partition={self.shared_partition}"
        )


class AVIDLoss(_BankObjective):
    """AVID with its two memory banks; ``forward`` scores the batch then updates the banks.

    Args:
        num_items: N, number of training videos (bank rows; ``index`` values lie in ``[0, N)``).
        dim: D, embedding size.
        num_negatives: K negatives sampled per anchor (uniform, never the anchor itself).
        temperature: softmax / NCE temperature.
        momentum: memory-bank momentum (weight of the old entry).
        loss: ``"nce"`` or ``"softmax"``.
        xmodal_weight, within_weight: weights of the cross-modal and within-modal terms
            (AVID "xmodal" = ``(1, 0)``, "joint" = ``(1, 1)``).
        bank_dtype: bank storage dtype (``torch.float16`` halves the memory).
        seed: bank initialisation seed (identical on every process).
        normalize_weights, shared_partition: AVID-CMA's loss conventions (see the module doc).

    Shape: ``forward(video_emb (B, D), audio_emb (B, D), index (B,))`` -> ``(loss, logs)``.
    """

    config_cls = AVIDConfig

    @classmethod
    def build(cls, cfg: AVIDConfig, ctx: ObjectiveContext) -> AVIDLoss:
        return cls(ctx.num_items, ctx.embed_dim, **cfg.bank_kwargs(), seed=ctx.seed)

    def compute(self, out: AVOutput, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.avid_scores(out.video_emb, out.audio_emb, index)

    def __init__(
        self,
        num_items: int,
        dim: int,
        *,
        num_negatives: int = 1024,
        temperature: float = 0.07,
        momentum: float = 0.5,
        loss: str = "nce",
        xmodal_weight: float = 1.0,
        within_weight: float = 0.0,
        bank_dtype: torch.dtype = torch.float32,
        seed: int = 0,
        normalize_weights: bool = False,
        shared_partition: bool = False,
    ) -> None:
        super().__init__(
            num_items,
            dim,
            num_negatives=num_negatives,
            temperature=temperature,
            momentum=momentum,
            loss=loss,
            xmodal_weight=xmodal_weight,
            within_weight=within_weight,
            bank_dtype=bank_dtype,
            seed=seed,
            normalize_weights=normalize_weights,
            shared_partition=shared_partition,
        )

    def forward(
        self,
        video_emb: Tensor,
        audio_emb: Tensor,
        index: Tensor,
        *,
        negatives: Tensor | None = None,
        generator: torch.Generator | None = None,
        update_memory: bool = True,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss against the banks as they were, then (``update_memory``) the bank update.

        ``negatives (B, K)`` overrides the sampling (tests, reproducibility).
        """
        value, logs = self.avid_scores(video_emb, audio_emb, index, negatives, generator)
        if update_memory:
            self.update_memory(video_emb, audio_emb, index)
        return value, logs
