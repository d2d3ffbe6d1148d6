"""Scoring localization maps on a synthetic collection's test split: published metrics and sound checks.

Each test video is scored on the window of frames centred on its middle frame
(:func:`middle_windows`, decoded once for any number of models); :func:`score_windows` gives the
published cIoU / AUC / pointing metrics of the maps of those frames with their own sound, for
``avlearn evaluate localization`` (:mod:`avlearn.localization.evaluate`) and :func:`score_model`.

Does a map follow the *sound*? The published metrics (:mod:`avlearn.localization.metrics`) score
a map against the sounding object's box, but a map that marks whatever moves, or the most salient
object, scores well too when the sounding object is the one that moves. Three checks, each on
the window of frames centred on a test video's middle frame:

* ``on_distractor``: frames with a silent distractor whose map peak lands on a distractor and
  not on the sounding object.
* ``swap_pointing``: the same frames with the sound of a video whose sounding class is a visible
  distractor's: the fraction of peaks that move onto that distractor ("which object would make
  this sound"). The counterfactual is hard on this data: in training a silent object of a class
  never makes its sound, so a model may rightly keep the peak on the object that is moving.
* ``pair_pointing``: two test videos side by side (``(C, T, H, 2W)``), each with its own sounding
  object of a different class; the left video's sound should put the peak on the left object and
  the right video's sound on the right one. Both objects are real sources, so only the sound can
  decide: a map that ignores the sound is right for at most one of the two sounds (<= 50 %).

Used by ``avlearn evaluate localization``, ``benchmarks/localization_synth.py`` and the demo
(:mod:`demos.demo_stages`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from avlearn.data.audio import build_spectrogram
from avlearn.data.decode import DecodeError, decode_clip, read_audio
from avlearn.localization.inputs import ModelInput, normalize_video
from avlearn.localization.learned import Learned, localization_maps, localizer_grid, needs_stages
from avlearn.localization.metrics import LocalizationResult, evaluate_maps, gt_from_synth, pointing_hit
from avlearn.localization.module import upsample_map
from avlearn.models.av import AVModel

__all__ = ["Window", "box_mask", "heatmaps", "middle_windows", "model_grid", "pair_scores", "pairs",
           "score_model", "score_windows", "swap_donor"]


def box_mask(box: Sequence[int], height: int, width: int) -> np.ndarray:
    """``(height, width)`` map, 1 inside the pixel box ``[x0, y0, x1, y1]``."""
    gt = np.zeros((height, width))
    x0, y0, x1, y1 = (int(v) for v in box)
    gt[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1
    return gt


def swap_donor(
    entry: dict[str, Any], videos: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[int]] | None:
    """A video whose sounding class is that of a distractor visible on ``entry``'s middle frame,
    and that distractor's box; ``None`` when ``entry`` has no such distractor."""
    mid = int(entry["num_frames"]) // 2
    for d in entry.get("distractors", []):
        box = d["bbox"][mid]
        donor = next((v for v in videos if v["class"] == d["class"] and v["file"] != entry["file"]), None)
        if box is not None and donor is not None:
            return donor, box
    return None


@dataclasses.dataclass
class Window:
    """A test video's window centred on its middle frame, decoded once for every model."""

    gt: np.ndarray  # (H, W) box of the sounding object on the middle frame
    distractors: list[list[int]]  # boxes of the distractors visible on that frame
    video: Tensor  # (C, T, H, W) normalised as in training
    audio: Tensor  # (S,) own sound
    frame: int  # index of the middle frame in the window
    sounding: str  # the sounding object's class ("" when the annotations do not say)
    swap_audio: Tensor | None  # (S,) sound of a video whose sounding class is a visible distractor's
    swap_box: list[int] | None  # that distractor's box
    video_id: str = ""  # the annotation's video id


def middle_windows(root: Path, tests: list[dict[str, Any]], videos: list[dict[str, Any]] | None,
                   inp: ModelInput, progress: bool = True) -> list[Window]:
    """Decode the middle-frame window of every test video (``tests``: annotation entries; ``videos``:
    all entries, where swap donors are looked up; ``None``: no swap sounds). Videos without a box
    on that frame are left out; unreadable files are reported and skipped."""
    spec = inp.clip_spec()
    items = []
    bar = tqdm(tests, desc="decode test windows", unit="video", dynamic_ncols=True, disable=not progress)
    for entry in bar:
        mid = int(entry["num_frames"]) // 2
        gt = gt_from_synth(entry, mid)
        if gt is None:
            continue
        start, frame = inp.middle_window(mid / float(entry["fps"]))
        swap = None if videos is None else swap_donor(entry, videos)
        try:
            clip = decode_clip(root / entry["file"], start, spec)
            swap_audio = None if swap is None else read_audio(  # the donor's sound over the same window
                root / swap[0]["file"], inp.audio_start(start), inp.audio_seconds, inp.sample_rate)
        except DecodeError as err:
            print(f"skipping: {err}", file=sys.stderr)
            continue
        distractors = [d["bbox"][mid] for d in entry.get("distractors", []) if d["bbox"][mid] is not None]
        video = normalize_video(clip.video, inp)
        items.append(Window(gt, distractors, video, clip.audio, frame, entry.get("class", ""), swap_audio,
                            None if swap is None else swap[1], str(entry.get("video_id", ""))))
    return items


@torch.no_grad()
def model_grid(model: AVModel, inp: ModelInput, learned: Learned | None = None) -> tuple[int, int]:
    """``(H', W')`` of the video feature grid ``model``'s maps come from for ``inp``'s square clips
    (the last grid, or the stage ``learned`` reads): the resolution of the maps before upsampling,
    read from one forward pass (not assumed from a stride)."""
    was_training = model.training
    model.eval()
    try:
        video = torch.zeros(1, 3, inp.num_frames, inp.size, inp.size)
        audio = build_spectrogram(inp.spec)(torch.zeros(1, round(inp.audio_seconds * inp.sample_rate)))
        out = model(video, audio, video_stages=needs_stages(learned))
        grid = localizer_grid(out, learned[1].grid_stage if learned is not None else "")
    finally:
        model.train(was_training)
    return int(grid.shape[-2]), int(grid.shape[-1])


@torch.no_grad()
def heatmaps(model: AVModel, inp: ModelInput, learned: Learned | None, videos: Sequence[Tensor],
             frames: Sequence[int], audios: Sequence[Tensor], batch_size: int = 16) -> list[np.ndarray]:
    """Grid-resolution maps ``(H', W')`` of frame ``frames[k]`` of ``videos[k]`` (``(C, T, H, W)``)
    with ``audios[k]`` (``(S,)`` waveform) played."""
    spectrogram = build_spectrogram(inp.spec)
    out_maps: list[np.ndarray] = []
    for k in range(0, len(videos), batch_size):
        out = model(torch.stack(list(videos[k : k + batch_size])),
                    spectrogram(torch.stack(list(audios[k : k + batch_size]))),
                    video_stages=needs_stages(learned))
        maps = localization_maps(model, out, learned)
        maps = upsample_map(maps, (inp.num_frames, *maps.shape[-2:]))
        out_maps += [maps[i, f].numpy() for i, f in enumerate(frames[k : k + batch_size])]
    return out_maps


def pairs(items: list[Window]) -> list[tuple[Window, Window]]:
    """Each window with the next one (cyclically) of another sounding class and the same frame."""
    found = []
    for k, a in enumerate(items):
        later = (items[(k + j) % len(items)] for j in range(1, len(items)))
        b = next((w for w in later if w.sounding != a.sounding and w.frame == a.frame), None)
        if b is not None:
            found.append((a, b))
    return found


def pair_pointing(
    model: AVModel, inp: ModelInput, learned: Learned | None, items: list[Window]
) -> dict[str, Any]:
    """Side-by-side pairs: fraction of (pair, sound) trials whose peak lands on that sound's object.

    Returns ``{"pair_pointing", "pair_blind", "n_pairs"}``; ``pair_blind`` is the fraction of pairs
    whose two maps (left sound, right sound) peak on the same object's side, i.e. ignore the sound.
    """
    found = pairs(items)
    if not found:
        return {"pair_pointing": None, "pair_blind": None, "n_pairs": 0}
    videos = [torch.cat([a.video, b.video], dim=-1) for a, b in found]  # (C, T, H, 2W)
    frames = [a.frame for a, _ in found]
    left = heatmaps(model, inp, learned, videos, frames, [a.audio for a, _ in found])
    right = heatmaps(model, inp, learned, videos, frames, [b.audio for _, b in found])
    return pair_scores([(a.gt, b.gt) for a, b in found], left, right)


def pair_scores(gts: Sequence[tuple[np.ndarray, np.ndarray]], left: Sequence[np.ndarray],
                right: Sequence[np.ndarray]) -> dict[str, Any]:
    """Score side-by-side maps: ``gts[k]`` the two ``(H, W)`` boxes; ``left[k]`` / ``right[k]`` the
    ``(H', 2W')`` maps with the left / right video's sound played."""
    hits, blind = [], []
    for (ga, gb), hl, hr in zip(gts, left, right, strict=True):
        on_a = np.concatenate([ga, np.zeros_like(ga)], 1)
        on_b = np.concatenate([np.zeros_like(gb), gb], 1)
        hits += [pointing_hit(hl, on_a), pointing_hit(hr, on_b)]
        side_l = int(np.argmax(hl)) % hl.shape[1] >= hl.shape[1] // 2
        side_r = int(np.argmax(hr)) % hr.shape[1] >= hr.shape[1] // 2
        blind.append(side_l == side_r)
    return {"pair_pointing": float(np.mean(hits)), "pair_blind": float(np.mean(blind)), "n_pairs": len(gts)}


def score_windows(
    model: AVModel, inp: ModelInput, learned: Learned | None, items: list[Window]
) -> tuple[LocalizationResult, list[np.ndarray]]:
    """Published metrics (cIoU50, AUC, pointing, mean cIoU) of the maps ``(H', W')`` of each
    window's middle frame with its own sound, and those maps. Put ``model`` in ``eval()`` first."""
    heats = heatmaps(model, inp, learned, [it.video for it in items], [it.frame for it in items],
                     [it.audio for it in items])
    return evaluate_maps(heats, [it.gt for it in items]), heats


def score_model(
    model: AVModel, inp: ModelInput, learned: Learned | None, items: list[Window]
) -> dict[str, Any]:
    """Published metrics (:func:`score_windows`) plus the three sound checks of one model."""
    model.eval()
    published, heats = score_windows(model, inp, learned, items)
    result: dict[str, Any] = published.to_dict()
    with_dis = [(h, it) for h, it in zip(heats, items, strict=True) if it.distractors]
    result["on_distractor"] = float(np.mean([
        any(pointing_hit(h, box_mask(b, *it.gt.shape)) for b in it.distractors) and not pointing_hit(h, it.gt)
        for h, it in with_dis])) if with_dis else None
    result["n_with_distractor"] = len(with_dis)
    swaps = [it for it in items if it.swap_audio is not None and it.swap_box is not None]
    moved = heatmaps(model, inp, learned, [it.video for it in swaps], [it.frame for it in swaps],
                     [it.swap_audio for it in swaps if it.swap_audio is not None])
    swap_hits = [pointing_hit(h, box_mask(it.swap_box, *it.gt.shape))  # type: ignore[arg-type]
                 for h, it in zip(moved, swaps, strict=True)]
    result["swap_pointing"] = float(np.mean(swap_hits)) if swaps else None
    result["n_swap"] = len(swaps)
    # per test video: whether the peak is on the sounding object with its own sound, and (videos
    # with a swap sound) whether a swapped sound moves it onto the distractor; for choosing examples
    own_hits = {it.video_id: bool(pointing_hit(h, it.gt)) for h, it in zip(heats, items, strict=True)}
    moved_hits = {it.video_id: bool(hit) for it, hit in zip(swaps, swap_hits, strict=True)}
    result["per_video"] = {vid: {"own": hit, "swap": moved_hits.get(vid)} for vid, hit in own_hits.items()}
    result.update(pair_pointing(model, inp, learned, items))
    return result
