"""CMA: AVID with cross-modal agreement positive sets (Morgado et al., CVPR 2021).

Every ``few`` epochs the trainer calls :meth:`CMALoss.update_positive_sets`: for each
instance ``i`` the positive set holds the ``k`` other instances ``j`` with the highest
agreement score, computed on the memory banks:

* ``"consensus"`` -- ``min(cos_v(i, j), cos_a(i, j))``: similar in *both* spaces (the paper);
* ``"union"`` -- ``max(cos_v, cos_a)``; ``"video"`` / ``"audio"`` -- one space only.

The search is chunked over queries and keys with a running top-k, so memory is
``O(chunk_size^2 + N k)``; nothing ``(N, N)`` is allocated. With several processes the
query rows are split between ranks and gathered, so every rank ends with the same sets.

Loss: ``xmodal_weight * (L_v2a + L_a2v) / 2 + within_weight * (L_v2v + L_a2a) / 2`` (divided by
``xmodal_weight + within_weight`` with ``normalize_weights``). Negatives are sampled uniformly from
the bank excluding the instance and its whole positive set. Two term structures:

=========================  ======================================  ===================================
key                        ours (the defaults)                     AVID-CMA's release (paper presets)
=========================  ======================================  ===================================
``xmodal_positives``       true: cross-modal terms take the own    false: the own entry only
                           entry *and* the drawn positives         (``xModalPosCoeff: 0``)
``positives``              ``sampled``: ``P = num_positives``      ``all``: every member of the set
                           draws from the set per step             (``pos_k`` = 32)
``num_negatives_within``   0: within-modal terms share all ``K``   64: the first 64 of the ``K`` drawn
                           negatives                               (a uniform draw of 64)
``normalize_weights``      false                                   true
``partition``              ``per_direction``                       ``shared``
=========================  ======================================  ===================================

Kept on purpose in both: the instance itself is never a negative (the reference excludes the
positive set but not the instance, so with ``N`` items it is drawn with probability ~``K / N``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from avlearn.config import ConfigError
from avlearn.distributed import gather_no_grad, rank, world_size

from ._checks import check_choice, check_index, check_positive_int, check_weight, upcast
from .avid import AVIDConfig, _BankObjective, _check_bank_inputs, combine_directions
from .base import ObjectiveContext, RunFacts

if TYPE_CHECKING:
    from avlearn.models.av import AVOutput

__all__ = ["MODES", "CMAConfig", "CMALoss", "cma_loss", "compute_positive_sets"]

MODES = ("consensus", "union", "video", "audio")


def _agreement(v_sim: Tensor, a_sim: Tensor, mode: str) -> Tensor:
    if mode == "consensus":
        return torch.minimum(v_sim, a_sim)
    if mode == "union":
        return torch.maximum(v_sim, a_sim)
    return v_sim if mode == "video" else a_sim


@torch.no_grad()
def compute_positive_sets(
    video_bank: Tensor,
    audio_bank: Tensor,
    k: int,
    mode: str = "consensus",
    chunk_size: int = 4096,
    rows: tuple[int, int] | None = None,
) -> Tensor:
    """Top-``k`` agreement neighbours of every instance (itself excluded).

    Shape: ``video_bank, audio_bank (N, D)`` -> ``(N, k)`` long, each row ordered by
    decreasing agreement. ``rows=(start, stop)`` computes only those query rows
    (``(stop - start, k)``). Peak extra memory ~ ``3 * chunk_size^2`` float32.
    """
    check_choice("mode", mode, MODES)
    check_positive_int("k", k)
    check_positive_int("chunk_size", chunk_size)
    if video_bank.dim() != 2 or video_bank.shape != audio_bank.shape:
        raise ValueError(
            f"video_bank {tuple(video_bank.shape)} and audio_bank {tuple(audio_bank.shape)} "
            "must both be (N, D)"
        )
    n = video_bank.shape[0]
    if k > n - 1:
        raise ValueError(f"k={k} positives requested but each instance has only N - 1 = {n - 1} others")
    start, stop = (0, n) if rows is None else rows
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows must satisfy 0 <= start <= stop <= {n}, got {rows}")
    device = video_bank.device
    out = torch.empty(stop - start, k, dtype=torch.long, device=device)
    for q0 in range(start, stop, chunk_size):
        q1 = min(q0 + chunk_size, stop)
        qv, qa = video_bank[q0:q1].float(), audio_bank[q0:q1].float()
        q_index = torch.arange(q0, q1, device=device).unsqueeze(1)
        best_val = torch.full((q1 - q0, 0), float("-inf"), device=device)
        best_idx = torch.empty(q1 - q0, 0, dtype=torch.long, device=device)
        for k0 in range(0, n, chunk_size):
            k1 = min(k0 + chunk_size, n)
            score = _agreement(qv @ video_bank[k0:k1].float().T, qa @ audio_bank[k0:k1].float().T, mode)
            key_index = torch.arange(k0, k1, device=device).unsqueeze(0)
            score.masked_fill_(key_index == q_index, float("-inf"))  # never oneself
            val = torch.cat([best_val, score], dim=1)
            idx = torch.cat([best_idx, key_index.expand(q1 - q0, -1)], dim=1)
            top = val.topk(min(k, val.shape[1]), dim=1)
            best_val, best_idx = top.values, idx.gather(1, top.indices)
        out[q0 - start : q1 - start] = best_idx
    return out


def cma_loss(
    video_emb: Tensor,
    audio_emb: Tensor,
    video_memory: Tensor,
    audio_memory: Tensor,
    index: Tensor,
    positives: Tensor,
    negatives: Tensor,
    *,
    temperature: float = 0.07,
    loss: str = "nce",
    xmodal_weight: float = 1.0,
    within_weight: float = 1.0,
    partition: Mapping[str, Tensor | float] | None = None,
    xmodal_positives: bool = True,
    num_negatives_within: int = 0,
    normalize_weights: bool = False,
    shared_partition: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """CMA loss of a batch against the (not yet updated) memory banks.

    Shape: ``video_emb, audio_emb (B, D)`` L2-normalised; ``video_memory, audio_memory (N, D)``;
    ``index (B,)``; ``positives (B, P)`` bank rows from each instance's positive set (drawn, or the
    whole set); ``negatives (B, K)`` bank rows outside ``index`` and the positive set. Cross-modal
    positives: own entry + ``positives`` (``1 + P``) with ``xmodal_positives``, else the own entry;
    within-modal: ``positives`` (``P``) against the first ``num_negatives_within`` negatives (0: all).
    ``partition``, ``normalize_weights``, ``shared_partition``: as in
    :func:`~avlearn.objectives.avid.avid_loss`.
    """
    check_weight("xmodal_weight", xmodal_weight)
    check_weight("within_weight", within_weight)
    _check_bank_inputs(video_emb, audio_emb, video_memory, audio_memory, index, negatives)
    b = video_emb.shape[0]
    if positives.dim() != 2 or positives.shape[0] != b or positives.shape[1] < 1:
        raise ValueError(f"positives must be ({b}, P >= 1) indices, got shape {tuple(positives.shape)}")
    check_index(positives.reshape(-1), positives.numel(), video_memory.shape[0], name="positives")
    if not 0 <= num_negatives_within <= negatives.shape[1]:
        raise ValueError(
            f"num_negatives_within must be in [0, K={negatives.shape[1]}], got {num_negatives_within}"
        )
    k_within = num_negatives_within or negatives.shape[1]
    with torch.no_grad():
        own_and_pos = torch.cat([index.long().unsqueeze(1), positives.long()], dim=1)
        v_mem, a_mem = video_memory.detach(), audio_memory.detach()
        v_xpos, a_xpos = upcast(v_mem[own_and_pos]), upcast(a_mem[own_and_pos])
        v_neg, a_neg = upcast(v_mem[negatives]), upcast(a_mem[negatives])
    terms: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    n_xpos = own_and_pos.shape[1] if xmodal_positives else 1
    if xmodal_weight > 0:
        terms["v2a"] = (video_emb, a_xpos[:, :n_xpos], a_neg)
        terms["a2v"] = (audio_emb, v_xpos[:, :n_xpos], v_neg)
    if within_weight > 0:
        terms["v2v"] = (video_emb, v_xpos[:, 1:], v_neg[:, :k_within])
        terms["a2a"] = (audio_emb, a_xpos[:, 1:], a_neg[:, :k_within])
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


@dataclasses.dataclass(frozen=True)
class CMAConfig(AVIDConfig):
    """The ``objective:`` section of ``name: cma``: AVID's keys plus the positive sets and their schedule.

    Attributes:
        positive_set_size, num_positives, mode: k, P and the agreement (see :class:`CMALoss`).
        positives: ``sampled`` (ours: ``num_positives`` draws per step) or ``all`` (AVID-CMA: the
            whole set; ``num_positives`` is then unused).
        xmodal_positives: add the positives to the cross-modal terms (ours) or not (AVID-CMA).
        num_negatives_within: negatives of the within-modal terms, the first of the ``K`` drawn
            (AVID-CMA: 64); 0 shares all ``K`` (ours).
        cma_start_epoch: epochs trained with plain AVID on the same banks before the positive sets
            are first computed (0 when starting from an AVID run with ``init_from``, as in the paper).
        cma_every_epochs: recompute the positive sets every this many epochs.
    """

    positive_set_size: int = 32
    num_positives: int = 8
    mode: Literal["consensus", "union", "video", "audio"] = "consensus"
    cma_start_epoch: int = 0
    cma_every_epochs: int = 5
    positives: Literal["sampled", "all"] = "sampled"
    xmodal_positives: bool = True
    num_negatives_within: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.num_negatives_within <= self.num_negatives:
            raise ConfigError(f"objective.num_negatives_within must be in [0, num_negatives="
                              f"{self.num_negatives}] (0: share all), got {self.num_negatives_within}")
        for key in ("positive_set_size", "num_positives", "cma_every_epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"objective.{key} must be >= 1, got {getattr(self, key)}")
        if self.cma_start_epoch < 0:
            raise ConfigError(f"objective.cma_start_epoch must be >= 0, got {self.cma_start_epoch}")


class CMALoss(_BankObjective):
    """AVID-CMA with its memory banks and positive sets (buffer ``positive_sets (N, k)`` int32).

    Args (beyond :class:`~avlearn.objectives.avid.AVIDLoss`'s):
        positive_set_size: k, neighbours kept per instance.
        num_positives: P, positives drawn (with replacement) from the set at every step.
        mode: agreement, one of :data:`MODES`.
        chunk_size: query/key chunk of the positive-set search.
        all_positives: use the whole positive set every step instead of ``num_positives`` draws.
        xmodal_positives, num_negatives_within: the term structure (see :func:`cma_loss`).

    Call :meth:`update_positive_sets` (every few epochs; usually after loading AVID-trained
    banks and partition) before the first ``forward``.
    Shape: ``forward(video_emb (B, D), audio_emb (B, D), index (B,))`` -> ``(loss, logs)``.
    """

    positive_sets: Tensor
    config_cls = CMAConfig

    @classmethod
    def build(cls, cfg: CMAConfig, ctx: ObjectiveContext) -> CMALoss:
        objective = cls(ctx.num_items, ctx.embed_dim, positive_set_size=cfg.positive_set_size,
                        num_positives=cfg.num_positives, mode=cfg.mode, **cfg.bank_kwargs(), seed=ctx.seed,
                        all_positives=cfg.positives == "all", xmodal_positives=cfg.xmodal_positives,
                        num_negatives_within=cfg.num_negatives_within)
        objective.start_epoch, objective.every_epochs = cfg.cma_start_epoch, cfg.cma_every_epochs
        return objective

    @classmethod
    def check_run(cls, cfg: CMAConfig, run: RunFacts) -> None:
        super().check_run(cfg, run)
        if cfg.cma_start_epoch >= run.epochs:
            raise ValueError(f"objective.cma_start_epoch ({cfg.cma_start_epoch}) must be < epochs "
                             f"({run.epochs}), or CMA never starts")

    def on_epoch_start(self, epoch: int, first_batch: bool = True) -> str | None:
        """Plain AVID on the same banks before ``start_epoch``; then, at an epoch's first batch, new
        positive sets every ``every_epochs`` epochs (or when there are none yet)."""
        self.epoch = epoch
        if not first_batch or epoch < self.start_epoch:
            return None
        if (epoch - self.start_epoch) % self.every_epochs == 0 or not self.has_positive_sets:
            self.update_positive_sets()
            return "positive_sets"
        return None

    def compute(self, out: AVOutput, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.epoch < self.start_epoch:  # warm-up: AVID's loss and sampling on the same banks
            return self.avid_scores(out.video_emb, out.audio_emb, index)
        return self(out.video_emb, out.audio_emb, index, update_memory=False)  # type: ignore[no-any-return]

    def load_objective_state(self, state: Mapping[str, Any], *, partial: bool = False) -> None:
        """Also accepts the state of an AVID objective (a warm-up checkpoint): no positive sets yet."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        if not partial and (unexpected or set(missing) - {"positive_sets"}):
            raise RuntimeError(f"CMA objective state: missing keys {missing}, unexpected keys {unexpected}")

    def __init__(
        self,
        num_items: int,
        dim: int,
        *,
        positive_set_size: int = 32,
        num_positives: int = 8,
        mode: str = "consensus",
        num_negatives: int = 1024,
        temperature: float = 0.07,
        momentum: float = 0.5,
        loss: str = "nce",
        xmodal_weight: float = 1.0,
        within_weight: float = 1.0,
        bank_dtype: torch.dtype = torch.float32,
        seed: int = 0,
        chunk_size: int = 4096,
        all_positives: bool = False,
        xmodal_positives: bool = True,
        num_negatives_within: int = 0,
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
        check_choice("mode", mode, MODES)
        if not 0 <= num_negatives_within <= num_negatives:
            raise ValueError(
                f"num_negatives_within must be in [0, {num_negatives}], got {num_negatives_within}"
            )
        self.all_positives = all_positives
        self.xmodal_positives = xmodal_positives
        self.num_negatives_within = num_negatives_within
        check_positive_int("positive_set_size", positive_set_size)
        check_positive_int("num_positives", num_positives)
        check_positive_int("chunk_size", chunk_size)
        if positive_set_size > num_items - 1:
            raise ValueError(f"positive_set_size must be <= num_items - 1 = {num_items - 1}")
        self.mode = mode
        self.num_positives = num_positives
        self.chunk_size = chunk_size
        self.start_epoch, self.every_epochs, self.epoch = 0, 1, 0  # the schedule (set by build)
        self.register_buffer(
            "positive_sets", torch.full((num_items, positive_set_size), -1, dtype=torch.int32)
        )
        self._has_sets = False

    def forget_host_copies(self) -> None:
        super().forget_host_copies()
        self._has_sets = False

    @property
    def has_positive_sets(self) -> bool:
        """Whether the sets are computed; read from the buffer (a device sync) until they are."""
        if not self._has_sets:
            self._has_sets = bool(self.positive_sets[0, 0] >= 0)
        return self._has_sets

    @torch.no_grad()
    def update_positive_sets(self) -> None:
        """Recompute ``positive_sets`` from the current banks, splitting rows over processes."""
        n, k = self.positive_sets.shape
        per_rank = -(-n // world_size())
        start = min(rank() * per_rank, n)
        local = compute_positive_sets(
            self.video_bank.weight,
            self.audio_bank.weight,
            k,
            self.mode,
            self.chunk_size,
            rows=(start, min(start + per_rank, n)),
        )
        padded = torch.zeros(per_rank, k, dtype=torch.long, device=local.device)
        padded[: local.shape[0]] = local
        self.positive_sets.copy_(gather_no_grad(padded)[:n].to(torch.int32))
        self._has_sets = True  # every row holds k valid indices (>= 0)

    def sample_positives(self, index: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``P`` draws with replacement from each instance's positive set: ``(B,) -> (B, P)`` long;
        with ``all_positives`` the whole set, ``(B, k)``."""
        if not self.has_positive_sets:
            raise RuntimeError("positive sets are not computed yet; call update_positive_sets() first")
        sets = self.positive_sets[index.long()].long()
        if self.all_positives:
            return sets
        device = generator.device if generator is not None else sets.device
        draw = torch.randint(
            0, sets.shape[1], (sets.shape[0], self.num_positives), generator=generator, device=device
        )
        return sets.gather(1, draw.to(sets.device))

    def forward(
        self,
        video_emb: Tensor,
        audio_emb: Tensor,
        index: Tensor,
        *,
        positives: Tensor | None = None,
        negatives: Tensor | None = None,
        generator: torch.Generator | None = None,
        update_memory: bool = True,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss against the banks as they were, then (``update_memory``) the bank update."""
        check_index(index, video_emb.shape[0], self.num_items)
        if positives is None:
            positives = self.sample_positives(index, generator)
        if negatives is None:
            if not self.has_positive_sets:
                raise RuntimeError("positive sets are not computed yet; call update_positive_sets() first")
            exclude = self.positive_sets[index.long()].long()
            negatives = self.video_bank.sample_negatives(index, self.num_negatives, generator, exclude)
        value, logs = cma_loss(
            video_emb,
            audio_emb,
            self.video_bank.weight,
            self.audio_bank.weight,
            index,
            positives,
            negatives,
            temperature=self.temperature,
            loss=self.loss,
            xmodal_weight=self.xmodal_weight,
            within_weight=self.within_weight,
            partition=self._step_partitions(),
            xmodal_positives=self.xmodal_positives,
            num_negatives_within=self.num_negatives_within,
            normalize_weights=self.normalize_weights,
            shared_partition=self.shared_partition,
        )
        self._store_partitions(logs)
        if update_memory:
            self.update_memory(video_emb, audio_emb, index)
        return value, logs

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, mode={self.mode!r}, positive_set_size={self.positive_sets.shape[1]}, "
            f"num_positives={'all' if self.all_positives else self.num_positives}, "
            f"xmodal_positives={self.xmodal_positives}, num_negatives_within={self.num_negatives_within}"
        )
