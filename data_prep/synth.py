"""Generate the synthetic audio-visual collection: the project's embedded default dataset.

``python -m data_prep.synth --out DIR --num-videos 1200`` (or ``avlearn synth ...``) writes real
MP4 files (H.264 video + AAC mono audio) in which one *sounding* object moves in front of a
varied background together with 0..``max_distractors`` *silent* objects of other classes.

What a video contains
---------------------
* **Object classes** (:data:`CLASSES`): each has a visual identity (shape, saturated colour,
  texture that moves with the object) and a characteristic sound (pure tone, odd-harmonic buzz,
  band-passed hiss, repeating chirp, vibrato FM tone, pulse train, low rumble, inharmonic bell).
  Pitch varies by +-10 % per video; the kind of sound does not.
* **Actions** (:data:`ACTIONS`): the sounding object's motion pattern. ``Bouncing`` (parabola-like
  hops on a floor, an impact at each contact), ``Circling`` (orbit with varying angular speed),
  ``Crossing`` (one pass across the frame, speed bell-shaped, partly outside at both ends),
  ``Zooming`` (size oscillates around a fixed point), ``Shaking`` (episodes of rapid back-and-forth
  along a random axis, an impact at each reversal, pauses between), ``Resting`` (still). The
  action of video ``i`` is ``ACTIONS[i % 6]`` (balanced); the object class, distractors,
  background and every motion parameter are drawn from the video's own random stream, so the
  action is independent of class and background.
* **Distractors** drift in straight lines at a slow constant speed, reflecting off the frame
  edges. They make no sound. The sounding object is drawn last (never occluded).
* **Background**: per video one of ``gradient``, ``blobs`` (smooth low-frequency noise),
  ``solid`` (flat colour with fine static grain) or ``stripes`` (soft low-contrast bands); its
  colours are muted (greyish) so the saturated objects stand out.

Audio-visual synchrony
----------------------
The sound is ``loudness(t) * source(t) + impacts(t) + noise``. ``loudness(t) = idle + (1 - idle)
* m(t) / max(m)`` where ``m(t)`` is the sounding object's *motion energy* in px/s: centre speed
plus the speed of its half-size (zooming), ``idle = 0.2`` (a resting object still hums quietly).
Each impact (``audio_events``) adds a 60 ms decaying burst (class sound + broadband click)
starting exactly at the event time. A white-noise floor (``noise_level``) is always present.

Actions are audible, as in real video (a bouncing ball thuds, a passing car's pitch falls): on
top of the class's sound, each action has a *voice* in step with its motion. Bouncing thuds at
each floor contact and Shaking rattles at each reversal (the impacts); Circling whirrs (the level
beats four times per turn, in phase with the angle); Crossing's pitch falls by half an octave
over the pass, fastest mid-frame; Zooming's pitch is up to 15 % higher while the object grows
(approaches) and lower while it shrinks; Resting only hums. Without these voices the sound told
the object class but hardly the action, so audio-visual pretraining had nothing to teach about
actions (generator version 1: AV features probed no better than random ones on actions).
Frame ``i`` shows the scene at ``t = i / fps``; the audio's sample ``n`` is at ``n / sample_rate``
on the same clock, so a correlation of object speed with the audio RMS envelope peaks at lag 0.

Layout (UCF-101 style)
----------------------
::

    DIR/videos/<Action>/v_<Action>_gNN_cNN.mp4
    DIR/splits/classInd.txt         "1 Bouncing" ... (action labels, 1-based, as UCF-101)
    DIR/splits/objectInd.txt        "1 red_disc" ... (sounding-object classes, 1-based)
    DIR/splits/trainlist01.txt      "Bouncing/v_Bouncing_g05_c01.mp4 1"
    DIR/splits/vallist01.txt        same format as trainlist
    DIR/splits/testlist01.txt       "Bouncing/v_Bouncing_g01_c01.mp4"  (no label, as UCF-101)
    DIR/annotations.json            see below
    DIR/synth_config.json           the options that determine the content (checked on resume)
    DIR/splits/test_plus_silent.csv only with --negatives: the fixed negatives of the test split in
                                    SLAVC's layout, "video,audio,label" rows: a test video played with
                                    the sound of a test video whose sounding class is not in view on
                                    its middle frame (label non-sounding, an off-screen source)

Video ``i`` is clip ``j = i // 6`` of its action, group ``gNN = j // clips_per_group + 1``, clip
``cNN = j % clips_per_group + 1``. Splits go by group number, shared by all actions (as UCF-101):
the first ``round(G * test_fraction)`` groups are test, the next ``round(G * val_fraction)`` val,
the rest train (at least one group each once there are 3 groups), so no group crosses splits.

annotations.json (``format_version`` 1)
---------------------------------------
::

    {
      "format_version": 1,
      "generator": "data_prep.synth",
      "config": {... SynthConfig fields that determine the content ...},
      "actions": ["Bouncing", ...],                       # index = action_label - 1
      "classes": [{"name": "red_disc", "label": 0, "shape": "disc", "color": [r, g, b],
                   "texture": "solid", "sound": "pure tone 440 Hz"}, ...],
      "splits": {"train": n, "val": n, "test": n},
      "videos": [
        {
          "video_id": "v_Bouncing_g01_c01",
          "file": "videos/Bouncing/v_Bouncing_g01_c01.mp4",   # relative to DIR
          "index": 0, "seed": [seed, index],                  # np.random.SeedSequence entropy
          "action": "Bouncing", "action_label": 1,            # 1-based like classInd.txt
          "class": "red_disc", "class_label": 0,              # the sounding object's class (0-based)
          "split": "test", "group": 1, "clip": 1,
          "fps": 25.0, "num_frames": 100, "duration": 4.0,
          "width": 112, "height": 112, "sample_rate": 16000,
          "background": "gradient",
          "bbox": [[x0, y0, x1, y1] | null, ...],             # sounding object, one per frame
          "motion": [m, ...],                                 # its motion energy (px/s) per frame
          "distractors": [{"class": "blue_square", "class_label": 1, "bbox": [...]}, ...],
          "audio_events": [t, ...]                            # impact times (s)
        }, ...
      ]
    }

Boxes are tight boxes of the object's mask in pixels, ``x1``/``y1`` exclusive (the box covers
columns ``x0 .. x1 - 1``), clipped to the frame; divide by width/height for VGG-Sound-Source
style normalised boxes. A box is ``null`` on a frame where the object is entirely outside
(the motions keep at least part of the sounding object in view, so this does not happen for it).
Boxes ignore occlusion: a distractor behind the sounding object keeps its full box.

Determinism and resume
----------------------
Video ``i`` draws everything from ``np.random.default_rng(np.random.SeedSequence([seed, i]))``,
so its content does not depend on the number of videos, worker count or order. Files are written
to a temporary name and renamed atomically; a rerun skips existing files (their annotations are
re-derived, which is cheap) and always writes complete annotations and split lists. Files of
videos beyond ``num_videos`` (from an earlier, larger run) stay on disk but are not listed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from avlearn.data.pool import process_pool
from avlearn.media import write_av

__all__ = ["ACTIONS", "CLASSES", "FORMAT_VERSION", "ObjectClass", "SynthConfig", "generate", "main",
           "negative_pairs", "render_video"]

FORMAT_VERSION = 1
# Bumped when the same options make different files (2: actions have their own sound; 3: x264's
# assembly off, so encodes are repeatable), so a collection made by an older generator is not
# silently resumed with new videos.
GENERATOR_VERSION = 3
ACTIONS: tuple[str, ...] = ("Bouncing", "Circling", "Crossing", "Zooming", "Shaking", "Resting")

_CONTROL_RATE = 400.0  # Hz: the grid on which the motion energy that drives loudness is computed
_IDLE_LOUDNESS = 0.2
_SOURCE_RMS = 0.25
_IMPACT_SECONDS = 0.06
# How actions sound (see _motion): whirr beats per turn and depth, a passing object's pitch fall
# (octaves over the whole pass), an approaching/receding object's pitch shift (fraction).
_WHIRR_BEATS = 4
_WHIRR_DEPTH = 0.7
_PASS_OCTAVES = 0.5
_APPROACH_PITCH = 0.15


@dataclasses.dataclass(frozen=True)
class ObjectClass:
    """A sounding-object class: how it looks and how it sounds."""

    name: str
    shape: str  # disc, square, triangle, star, ring, diamond, cross, hexagon
    color: tuple[int, int, int]
    texture: str  # solid, stripes, checker, dots, hstripes
    sound: str  # key of the source generator
    description: str  # the sound, in words


CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("red_disc", "disc", (220, 30, 30), "solid", "tone", "pure tone 440 Hz"),
    ObjectClass("blue_square", "square", (30, 70, 235), "solid", "buzz", "odd-harmonic buzz 150 Hz"),
    ObjectClass("green_triangle", "triangle", (30, 200, 50), "stripes", "hiss",
                "band-passed noise 2.5-4.5 kHz"),
    ObjectClass("yellow_star", "star", (245, 225, 30), "solid", "chirp", "rising chirp 500-2000 Hz, 4 per s"),
    ObjectClass("purple_ring", "ring", (150, 40, 210), "solid", "fm", "vibrato tone 700 Hz +-150 Hz at 6 Hz"),
    ObjectClass("orange_diamond", "diamond", (255, 140, 0), "checker", "pulses",
                "pulse train 16 Hz of 1.2 kHz pings"),
    ObjectClass("cyan_cross", "cross", (0, 215, 225), "dots", "rumble", "low rumble noise 80-400 Hz"),
    ObjectClass("magenta_hexagon", "hexagon", (235, 40, 160), "hstripes", "bell",
                "inharmonic bell partials 523, 1443, 2824, 4670 Hz"),
)


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """All options of the generator (see the module docstring for what they produce).

    Attributes:
        out: output directory.
        num_videos: number of videos.
        seed: collection seed; video ``i`` uses ``SeedSequence([seed, i])``.
        size: frame width and height in pixels (even).
        fps: video frame rate.
        duration: seconds per video.
        sample_rate: audio sample rate in Hz.
        workers: worker processes (``None``: ``os.cpu_count()``; 0 or 1: in this process).
        object_scale: object diameter relative to the frame size (at zoom 1).
        max_distractors: silent distractors per video are drawn from ``0..max_distractors``.
        clips_per_group: clips per group ``gNN`` within an action.
        val_fraction: share of groups in the validation split.
        test_fraction: share of groups in the test split.
        noise_level: standard deviation of the white-noise floor added to the audio.
        crf: x264 constant rate factor.
        negatives: also write ``splits/test_plus_silent.csv`` (no video changes).
    """

    out: Path = Path("data/synth")
    num_videos: int = 1200
    seed: int = 0
    size: int = 112
    fps: float = 25.0
    duration: float = 4.0
    sample_rate: int = 16000
    workers: int | None = None
    object_scale: float = 0.3
    max_distractors: int = 2
    clips_per_group: int = 4
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    noise_level: float = 0.005
    crf: int = 23
    negatives: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.num_videos < 1:
            problems.append(f"num_videos must be >= 1, got {self.num_videos}")
        if self.size < 16 or self.size % 2:
            problems.append(f"size must be an even number >= 16, got {self.size}")
        if self.fps <= 0 or self.duration <= 0 or self.sample_rate < 8000:
            problems.append(f"need fps > 0, duration > 0, sample_rate >= 8000; got {self.fps}, "
                            f"{self.duration}, {self.sample_rate}")
        if not 0.05 <= self.object_scale <= 0.6:
            problems.append(f"object_scale must be in [0.05, 0.6], got {self.object_scale}")
        if not 0 <= self.max_distractors <= len(CLASSES) - 1:
            problems.append(f"max_distractors must be in [0, {len(CLASSES) - 1}], got {self.max_distractors}")
        if self.clips_per_group < 1:
            problems.append(f"clips_per_group must be >= 1, got {self.clips_per_group}")
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            problems.append(f"need val_fraction, test_fraction >= 0 with sum < 1, got "
                            f"{self.val_fraction}, {self.test_fraction}")
        if problems:
            raise ValueError("SynthConfig: " + "; ".join(problems))

    @property
    def num_frames(self) -> int:
        return round(self.duration * self.fps)

    def content_dict(self) -> dict[str, Any]:
        """The fields that determine the files' content (not where or how fast they are made)."""
        skip = {"out", "num_videos", "workers", "clips_per_group", "val_fraction", "test_fraction",
                "negatives"}  # the negatives list changes no video
        content = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        return {**content, "generator_version": GENERATOR_VERSION}


# ----------------------------------------------------------------------------------- naming, splits


def video_name(cfg: SynthConfig, index: int) -> tuple[str, int, int]:
    """``(action, group, clip)`` of video ``index`` (1-based group and clip)."""
    action = ACTIONS[index % len(ACTIONS)]
    j = index // len(ACTIONS)
    return action, j // cfg.clips_per_group + 1, j % cfg.clips_per_group + 1


def relative_path(cfg: SynthConfig, index: int) -> str:
    action, group, clip = video_name(cfg, index)
    return f"videos/{action}/v_{action}_g{group:02d}_c{clip:02d}.mp4"


def split_of_group(cfg: SynthConfig, group: int) -> str:
    """Split of group ``group`` (1-based) given the collection's number of groups."""
    per_action = math.ceil(cfg.num_videos / len(ACTIONS))
    n_groups = math.ceil(per_action / cfg.clips_per_group)
    n_test = round(n_groups * cfg.test_fraction)
    n_val = round(n_groups * cfg.val_fraction)
    if n_groups >= 3:
        n_test, n_val = max(1, n_test), max(1, n_val)
    if group <= n_test:
        return "test"
    if group <= n_test + n_val:
        return "val"
    return "train"


# ----------------------------------------------------------------------------------- motion


Trajectory = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
Voice = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold positions into ``[lo, hi]`` as a ball reflecting off both walls."""
    span = max(hi - lo, 1e-6)
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def _plain_voice(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ones_like(t), np.ones_like(t)


def _motion(action: str, rng: np.random.Generator, size: float, r0: float,
            duration: float) -> tuple[Trajectory, list[float], Voice]:
    """The sounding object's trajectory ``t -> (cx, cy, scale)``, impact times and voice.

    The voice ``t -> (gain, pitch)`` is how the action itself sounds, on top of the class's
    sound and the motion-driven loudness: a spinning whirr (Circling), a passing pitch fall
    (Crossing), an approach/recede pitch shift (Zooming); impacts make Bouncing and Shaking heard.
    """
    lo, hi = r0 + 1, size - r0 - 1
    mid = size / 2
    events: list[float] = []
    voice: Voice = _plain_voice
    if action == "Bouncing":
        freq = rng.uniform(0.9, 1.6)
        phase = rng.uniform(0, 1)
        floor = size - r0 - rng.uniform(1, 0.08 * size)
        height = rng.uniform(0.45, 0.85) * (floor - r0)
        xc, ax = rng.uniform(0.4, 0.6) * size, rng.uniform(0.0, 0.15) * size
        fx, px = rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
        events = [(k - phase) / freq for k in range(1, int(freq * duration + phase) + 1)]

        def traj(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            y = floor - height * np.abs(np.sin(np.pi * (freq * t + phase)))
            x = np.clip(xc + ax * np.sin(2 * np.pi * fx * t + px), lo, hi)
            return x, y, np.ones_like(t)
    elif action == "Circling":
        radius = rng.uniform(0.5, 1.0) * max(mid - r0 - 2, 1.0)
        cx = mid + rng.uniform(-1, 1) * (mid - r0 - 2 - radius)
        cy = mid + rng.uniform(-1, 1) * (mid - r0 - 2 - radius)
        omega = 2 * np.pi * rng.uniform(0.4, 0.8) * rng.choice([-1.0, 1.0])
        fm, pm, th0 = rng.uniform(0.3, 0.7), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        depth = 0.75 * omega / (2 * np.pi * fm)  # angular speed varies in [0.25, 1.75] * omega

        def angle(t: np.ndarray) -> np.ndarray:
            return np.asarray(th0 + omega * t + depth * np.sin(2 * np.pi * fm * t + pm))

        def traj(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            th = angle(t)
            return cx + radius * np.cos(th), cy + radius * np.sin(th), np.ones_like(t)

        def voice(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # a whirr: the level beats _WHIRR_BEATS times per turn, in step with the angle
            return 1 - _WHIRR_DEPTH * (0.5 + 0.5 * np.cos(_WHIRR_BEATS * angle(t))), np.ones_like(t)
    elif action == "Crossing":
        x0, x1 = (0.0, float(size)) if rng.random() < 0.5 else (float(size), 0.0)
        yc = rng.uniform(0.3, 0.7) * size
        ay, fy, py = rng.uniform(0, 0.08) * size, rng.uniform(0.2, 0.5), rng.uniform(0, 2 * np.pi)

        def progress(t: np.ndarray) -> np.ndarray:
            u = t / duration
            return np.asarray(u - np.sin(2 * np.pi * u) / (2 * np.pi))

        def traj(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            x = x0 + (x1 - x0) * progress(t)
            return x, yc + ay * np.sin(2 * np.pi * fy * t + py), np.ones_like(t)

        def voice(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # a passer-by's pitch falls as it goes past (Doppler-like), fastest mid-frame
            return np.ones_like(t), 2.0 ** (_PASS_OCTAVES * (0.5 - progress(t)))
    elif action == "Zooming":
        amp = rng.uniform(0.3, 0.5)
        margin = r0 * (1 + amp) + 1
        cx, cy = (rng.uniform(margin, max(margin, size - margin)) for _ in range(2))
        fz, pz = rng.uniform(0.4, 0.9), rng.uniform(0, 2 * np.pi)

        def traj(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            s = 1 + amp * np.sin(2 * np.pi * fz * t + pz)
            return np.full_like(t, cx), np.full_like(t, cy), s

        def voice(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # higher while growing (approaching), lower while shrinking (receding)
            return np.ones_like(t), 1 + _APPROACH_PITCH * np.cos(2 * np.pi * fz * t + pz)
    elif action == "Shaking":
        ang = rng.uniform(0, np.pi)
        dx, dy = np.cos(ang), np.sin(ang)
        amp = rng.uniform(0.06, 0.1) * size
        cx, cy = (rng.uniform(lo + amp, max(lo + amp, hi - amp)) for _ in range(2))
        episodes = []  # (start, freq, half_cycles)
        t0 = rng.uniform(0, 0.4)
        while t0 < duration:
            f, n = rng.uniform(3, 5), int(rng.integers(3, 9))
            episodes.append((t0, f, n))
            events += [t0 + (k + 0.5) / (2 * f) for k in range(n)]
            t0 += n / (2 * f) + rng.uniform(0.3, 0.8)
        events = [e for e in events if e < duration]

        def traj(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            off = np.zeros_like(t)
            for start, f, n in episodes:
                on = (t >= start) & (t < start + n / (2 * f))
                off += np.where(on, amp * np.sin(2 * np.pi * f * (t - start)), 0.0)
            return cx + dx * off, cy + dy * off, np.ones_like(t)
    elif action == "Resting":
        cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)

        def traj(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return np.full_like(t, cx), np.full_like(t, cy), np.ones_like(t)
    else:
        raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
    return traj, events, voice


def _drift(rng: np.random.Generator, size: float, r: float) -> Trajectory:
    """A distractor's path: slow straight drift reflecting off the frame edges."""
    lo, hi = r + 1, size - r - 1
    x0, y0 = rng.uniform(lo, hi), rng.uniform(lo, hi)
    speed, ang = rng.uniform(0.03, 0.1) * size, rng.uniform(0, 2 * np.pi)

    def traj(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = _reflect(x0 + speed * np.cos(ang) * t, lo, hi)
        y = _reflect(y0 + speed * np.sin(ang) * t, lo, hi)
        return x, y, np.ones_like(t)

    return traj


# ----------------------------------------------------------------------------------- pictures


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit shape in object coordinates ``u, v`` (radius 1, y down)."""
    return np.asarray(_shape_test(shape, u, v), dtype=bool)


def _shape_test(shape: str, u: np.ndarray, v: np.ndarray) -> Any:
    au, av_ = np.abs(u), np.abs(v)
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(au, av_) <= 0.85
    if shape == "triangle":
        return (v <= 0.75) & (au <= (v + 0.95) * 0.95 / 1.7)
    if shape == "star":
        rr, th = np.hypot(u, v), np.arctan2(v, u)
        return rr <= 0.45 + 0.55 * ((1 + np.cos(5 * (th + np.pi / 2))) / 2) ** 2
    if shape == "ring":
        rr2 = u * u + v * v
        return (rr2 <= 1.0) & (rr2 >= 0.5**2)
    if shape == "diamond":
        return au + av_ <= 1.0
    if shape == "cross":
        return ((au <= 0.32) & (av_ <= 0.95)) | ((av_ <= 0.32) & (au <= 0.95))
    if shape == "hexagon":
        return (av_ <= 0.866) & (np.sqrt(3) * au + av_ <= np.sqrt(3))
    raise ValueError(f"unknown shape {shape!r}")


_DARK = 0.55  # brightness of a texture's dark parts


def _dark_parts(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """Where a texture that moves with the object is dark (``None``: solid, nowhere)."""
    if texture == "solid":
        return None
    if texture == "stripes":
        dark = np.floor((u + v) * 2.5) % 2 > 0
    elif texture == "hstripes":
        dark = np.floor(v * 3.0) % 2 > 0
    elif texture == "checker":
        dark = (np.floor(u * 2.5) + np.floor(v * 2.5)) % 2 > 0
    elif texture == "dots":
        dark = (u * 3 - np.round(u * 3)) ** 2 + (v * 3 - np.round(v * 3)) ** 2 < 0.09
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return np.asarray(dark, dtype=bool)


@functools.cache
def class_shades(cls: ObjectClass) -> tuple[np.ndarray, np.ndarray]:
    """The two uint8 RGB colours an object of ``cls`` is painted with: full and dark."""
    col = np.asarray(cls.color, dtype=np.float64)
    full, dark = (np.clip(col * f + 0.5, 0, 255).astype(np.uint8) for f in (1.0, _DARK))
    return full, dark


def _muted(rng: np.random.Generator) -> np.ndarray:
    return np.asarray(np.clip(rng.uniform(50, 200) + rng.normal(0, 18, size=3), 0, 255))


def _background(rng: np.random.Generator, size: int) -> tuple[str, np.ndarray]:
    """A muted ``(H, W, 3)`` uint8 background and its kind."""
    kind = str(rng.choice(["gradient", "blobs", "solid", "stripes"]))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if kind == "gradient":
        a, b = _muted(rng), _muted(rng)
        ang = rng.uniform(0, 2 * np.pi)
        w = (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)) / np.sqrt(2) + 0.5
        img = a + (b - a) * w[..., None]
    elif kind == "blobs":
        grid = rng.normal(0, 22, size=(6, 6, 1)) + rng.normal(0, 7, size=(6, 6, 3))  # mostly luminance
        idx = np.linspace(0, 5, size)
        i0 = np.minimum(idx.astype(int), 4)
        f = (idx - i0)[:, None]
        rows = grid[i0] * (1 - f[..., None]) + grid[i0 + 1] * f[..., None]  # (size, 6, 3)
        img = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]
        img = img + _muted(rng)
    elif kind == "solid":
        img = _muted(rng) + rng.normal(0, 6, size=(size, size, 3))
    else:
        a, b = _muted(rng), _muted(rng)
        ang, period = rng.uniform(0, np.pi), rng.uniform(0.15, 0.4)
        w = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(ang) * xx + np.sin(ang) * yy) / period)
        img = a + (b - a) * 0.5 * w[..., None]
    return kind, np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _draw(frame: np.ndarray | None, cls: ObjectClass, cx: float, cy: float, r: float,
          size: int) -> list[int] | None:
    """Paint the object into uint8 ``frame`` (in place, if given); return its tight box or ``None``."""
    xa, xb = max(0, math.floor(cx - r - 1)), min(size, math.ceil(cx + r + 1))
    ya, yb = max(0, math.floor(cy - r - 1)), min(size, math.ceil(cy + r + 1))
    if xa >= xb or ya >= yb:
        return None
    v = (np.arange(ya, yb, dtype=np.float64)[:, None] + 0.5 - cy) / r  # (h, 1)
    u = (np.arange(xa, xb, dtype=np.float64)[None, :] + 0.5 - cx) / r  # (1, w)
    mask = np.broadcast_to(_shape_mask(cls.shape, u, v), (yb - ya, xb - xa))
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    if frame is not None:
        full, dark = class_shades(cls)
        win = frame[ya:yb, xa:xb]
        parts = _dark_parts(cls.texture, u, v)
        if parts is None:
            win[mask] = full
        else:
            parts = np.broadcast_to(parts, mask.shape)
            win[mask & ~parts] = full
            win[mask & parts] = dark
    return [int(xa + cols[0]), int(ya + rows[0]), int(xa + cols[-1] + 1), int(ya + rows[-1] + 1)]


# ----------------------------------------------------------------------------------- sounds


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0
    return np.fft.irfft(spec, n)


def _source(kind: str, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """The class's continuous sound, ``(n,)`` with RMS ``_SOURCE_RMS``; pitch jittered +-10 %."""
    t = np.arange(n) / sr
    pf = rng.uniform(0.9, 1.1)
    ph = rng.uniform(0, 2 * np.pi)
    if kind == "tone":
        y = np.sin(2 * np.pi * 440 * pf * t + ph)
    elif kind == "buzz":
        f = 150 * pf
        y = np.sum([np.sin(2 * np.pi * k * f * t + ph) / k
                    for k in range(1, 26, 2) if k * f < 0.45 * sr], axis=0)
    elif kind == "hiss":
        y = _band_noise(rng, n, sr, 2500 * pf, min(4500 * pf, 0.48 * sr))
    elif kind == "chirp":
        period, f0, f1 = 0.25, 500 * pf, 2000 * pf
        tau = np.mod(t, period)
        k = np.log(f1 / f0)
        y = np.sin(2 * np.pi * f0 * period / k * (np.exp(k * tau / period) - 1))
        y *= np.minimum(1.0, np.minimum(tau, period - tau) / 0.01)
    elif kind == "fm":
        y = np.sin(2 * np.pi * 700 * pf * t + (150 / 6) * np.sin(2 * np.pi * 6 * t) + ph)
    elif kind == "pulses":
        tau = np.mod(t, 1 / 16)
        y = np.sin(2 * np.pi * 1200 * pf * tau) * np.exp(-tau / 0.012)
    elif kind == "rumble":
        y = _band_noise(rng, n, sr, 80 * pf, 400 * pf)
    elif kind == "bell":
        parts = [(1.0, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25)]
        y = np.sum([a * np.sin(2 * np.pi * 523 * pf * m * t + ph * m)
                    for m, a in parts if 523 * pf * m < 0.45 * sr], axis=0)
    else:
        raise ValueError(f"unknown sound {kind!r}")
    y = np.asarray(y, dtype=np.float64)
    return y * (_SOURCE_RMS / max(float(np.sqrt(np.mean(y * y))), 1e-9))


def _motion_energy(traj: Trajectory, r0: float, t: np.ndarray) -> np.ndarray:
    """Centre speed plus half-size speed (px/s) at times ``t`` (a regular grid)."""
    x, y, s = traj(t)
    dt = t[1] - t[0] if len(t) > 1 else 1.0
    return np.asarray(np.hypot(np.gradient(x, dt), np.gradient(y, dt)) + np.abs(np.gradient(r0 * s, dt)))


def _soundtrack(cfg: SynthConfig, rng: np.random.Generator, cls: ObjectClass, traj: Trajectory,
                r0: float, events: Sequence[float], voice: Voice = _plain_voice) -> np.ndarray:
    sr = cfg.sample_rate
    n = round(cfg.duration * sr)
    tc = np.arange(math.ceil(cfg.duration * _CONTROL_RATE) + 2) / _CONTROL_RATE
    gain, pitch = voice(tc)
    # the action's pitch: read the class sound at a warped time, d(read)/dt = pitch(t)
    read = np.concatenate([[0.0], np.cumsum(pitch[:-1]) / _CONTROL_RATE])
    ts = np.arange(n) / sr
    warped = np.interp(ts, tc, read)
    n_src = math.ceil(warped[-1] * sr) + 2 if n else 0
    src_raw = _source(cls.sound, rng, max(n_src, n), sr)
    src = np.interp(warped * sr, np.arange(len(src_raw)), src_raw)
    m = _motion_energy(traj, r0, tc)
    m_ref = max(float(m.max()), 0.05 * cfg.size)  # a still object stays at idle loudness
    loud = (_IDLE_LOUDNESS + (1 - _IDLE_LOUDNESS) * np.clip(m / m_ref, 0, 1)) * gain
    y = np.interp(ts, tc, loud) * src
    burst_n = round(_IMPACT_SECONDS * sr)
    tau = np.arange(burst_n) / sr
    for ev in events:
        i = round(ev * sr)
        if not 0 <= i < n:
            continue
        j = min(n, i + burst_n)
        burst = (2.5 * src[i:j] + 0.4 * rng.normal(size=j - i) * np.exp(-tau[: j - i] / 0.004))
        y[i:j] += burst * np.exp(-tau[: j - i] / 0.015)
    y += rng.normal(0, cfg.noise_level, size=n)
    peak = float(np.abs(y).max())
    if peak > 0.95:
        y *= 0.95 / peak
    return np.asarray(y, dtype=np.float32)


# ----------------------------------------------------------------------------------- one video


@dataclasses.dataclass
class Rendered:
    """One rendered video before encoding.

    Shape:
        frames: ``(T, H, W, 3)`` uint8 RGB, or ``None`` when rendering was skipped.
        audio: ``(S,)`` float32 mono waveform in [-1, 1].
    """

    frames: np.ndarray | None
    audio: np.ndarray
    annotation: dict[str, Any]


def render_video(cfg: SynthConfig, index: int, with_frames: bool = True) -> Rendered:
    """Render video ``index`` of the collection (pure function of ``cfg`` content fields and ``index``)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))
    action, group, clip = video_name(cfg, index)
    size, nf = cfg.size, cfg.num_frames
    r0 = cfg.object_scale * size / 2
    label = int(rng.integers(len(CLASSES)))
    cls = CLASSES[label]
    others = [i for i in range(len(CLASSES)) if i != label]
    n_dis = int(rng.integers(cfg.max_distractors + 1))
    dis_labels = [int(i) for i in rng.choice(others, size=n_dis, replace=False)]
    bg_kind, bg = _background(rng, size)
    traj, events, voice = _motion(action, rng, size, r0, cfg.duration)
    dis = []
    for _ in dis_labels:
        r = r0 * rng.uniform(0.7, 1.0)
        dis.append((r, _drift(rng, size, r)))
    audio = _soundtrack(cfg, rng, cls, traj, r0, events, voice)

    t = np.arange(nf) / cfg.fps
    xs, ys, ss = traj(t)
    dis_paths = [(r, d(t)) for r, d in dis]
    frames = np.empty((nf, size, size, 3), dtype=np.uint8) if with_frames else None
    boxes: list[list[int] | None] = []
    dis_boxes: list[list[list[int] | None]] = [[] for _ in dis]
    for i in range(nf):
        canvas = None
        if frames is not None:
            frames[i] = bg
            canvas = frames[i]
        for k, (r, (dx, dy, _)) in enumerate(dis_paths):
            dis_boxes[k].append(_draw(canvas, CLASSES[dis_labels[k]], float(dx[i]), float(dy[i]), r, size))
        boxes.append(_draw(canvas, cls, float(xs[i]), float(ys[i]), r0 * float(ss[i]), size))

    t_fine = np.arange(math.ceil(cfg.duration * _CONTROL_RATE) + 2) / _CONTROL_RATE
    motion = np.interp(t, t_fine, _motion_energy(traj, r0, t_fine))
    annotation: dict[str, Any] = {
        "video_id": f"v_{action}_g{group:02d}_c{clip:02d}",
        "file": relative_path(cfg, index),
        "index": index,
        "seed": [cfg.seed, index],
        "action": action,
        "action_label": ACTIONS.index(action) + 1,
        "class": cls.name,
        "class_label": label,
        "split": split_of_group(cfg, group),
        "group": group,
        "clip": clip,
        "fps": float(cfg.fps),
        "num_frames": nf,
        "duration": float(cfg.duration),
        "width": size,
        "height": size,
        "sample_rate": cfg.sample_rate,
        "background": bg_kind,
        "bbox": boxes,
        "motion": [round(float(m), 2) for m in motion],
        "distractors": [{"class": CLASSES[lab].name, "class_label": lab, "bbox": b}
                        for lab, b in zip(dis_labels, dis_boxes, strict=True)],
        "audio_events": [round(float(e), 5) for e in events],
    }
    return Rendered(frames, audio, annotation)


def _make_one(job: tuple[SynthConfig, int]) -> tuple[dict[str, Any], bool]:
    """Write video ``index`` unless it exists; return its annotation and whether it was written."""
    cfg, index = job
    path = Path(cfg.out) / relative_path(cfg, index)
    exists = path.is_file() and path.stat().st_size > 0
    rendered = render_video(cfg, index, with_frames=not exists)
    if not exists:
        tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.mp4")  # keep .mp4: the muxer goes by suffix
        write_av(tmp, rendered.frames, cfg.fps, rendered.audio, cfg.sample_rate, crf=cfg.crf,
                 gop=max(1, round(cfg.fps)))
        os.replace(tmp, path)
    return rendered.annotation, not exists


# ----------------------------------------------------------------------------------- collection


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_resume(cfg: SynthConfig, out: Path) -> None:
    path = out / "synth_config.json"
    want = cfg.content_dict()
    if path.exists():
        have = json.loads(path.read_text())
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise ValueError(
                f"{out} holds a synthetic collection made with different options ({', '.join(diff)}: "
                f"{ {k: have.get(k) for k in diff} } there, { {k: want.get(k) for k in diff} } now); "
                "use another --out directory or delete it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        _write_text(path, json.dumps(want, indent=2) + "\n")


def generate(cfg: SynthConfig, progress: bool = True) -> Path:
    """Generate (or complete) the collection described by ``cfg``; return the annotations path."""
    out = Path(cfg.out)
    _check_resume(cfg, out)
    for stale in out.glob("videos/*/*.tmp-*.mp4"):
        stale.unlink()
    jobs = [(cfg, i) for i in range(cfg.num_videos)]
    workers = (os.cpu_count() or 1) if cfg.workers is None else cfg.workers
    bar = tqdm(total=len(jobs), desc="synth", unit="video", disable=not progress)
    results: list[tuple[dict[str, Any], bool]] = []
    if workers <= 1:
        for job in jobs:
            results.append(_make_one(job))
            bar.update()
    else:
        with process_pool(workers) as pool:  # not forked: see process_pool
            for res in pool.map(_make_one, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers)))):
                results.append(res)
                bar.update()
    bar.close()
    videos = [ann for ann, _ in results]

    splits_dir = out / "splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    _write_text(splits_dir / "classInd.txt", "".join(f"{i + 1} {a}\n" for i, a in enumerate(ACTIONS)))
    _write_text(splits_dir / "objectInd.txt", "".join(f"{i + 1} {c.name}\n" for i, c in enumerate(CLASSES)))
    for split, fname, labelled in (("train", "trainlist01.txt", True), ("val", "vallist01.txt", True),
                                   ("test", "testlist01.txt", False)):
        lines = []
        for ann in sorted((a for a in videos if a["split"] == split), key=lambda a: a["file"]):
            rel = ann["file"].removeprefix("videos/")
            lines.append(f"{rel} {ann['action_label']}\n" if labelled else f"{rel}\n")
        _write_text(splits_dir / fname, "".join(lines))

    doc = {
        "format_version": FORMAT_VERSION,
        "generator": "data_prep.synth",
        "config": cfg.content_dict(),
        "actions": list(ACTIONS),
        "classes": [{"name": c.name, "label": i, "shape": c.shape, "color": list(c.color),
                     "texture": c.texture, "sound": c.description} for i, c in enumerate(CLASSES)],
        "splits": {s: sum(a["split"] == s for a in videos) for s in ("train", "val", "test")},
        "videos": videos,
    }
    ann_path = out / "annotations.json"
    _write_text(ann_path, json.dumps(doc, separators=(",", ":")) + "\n")
    if cfg.negatives:
        rows = "".join(f"{a},{b},non-sounding\n" for a, b in negative_pairs(videos, cfg.seed))
        _write_text(splits_dir / "test_plus_silent.csv", "video,audio,label\n" + rows)
    return ann_path


def _in_view(ann: dict[str, Any], frame: int) -> set[str]:
    """Classes visible on ``frame``: the sounding object's and every distractor's with a box."""
    seen = {d["class"] for d in ann.get("distractors", []) if d["bbox"][frame] is not None}
    return seen | ({ann["class"]} if ann["bbox"][frame] is not None else set())


def negative_pairs(videos: Sequence[dict[str, Any]], seed: int) -> list[tuple[str, str]]:
    """``(video_id, donor video_id)``: every test video with its sounding object on its middle
    frame, and a test video whose sounding class is not in view there (drawn with ``seed``), so
    the donor's sound comes from off screen. A video without such a donor is left out."""
    tests = sorted((v for v in videos if v["split"] == "test"), key=lambda v: v["video_id"])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E6567]))  # independent of the videos
    pairs = []
    for ann in tests:
        mid = int(ann["num_frames"]) // 2
        if ann["bbox"][mid] is None:
            continue
        seen = _in_view(ann, mid)
        donors = [d for d in tests if d["class"] not in seen]
        if donors:
            pairs.append((ann["video_id"], donors[int(rng.integers(len(donors)))]["video_id"]))
    return pairs


# ----------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = argparse.ArgumentParser(
        prog="avlearn synth",
        description="Generate the synthetic audio-visual collection (H.264 + AAC MP4 files in a "
                    "UCF-101 style layout, with annotations.json). Reruns resume: existing videos "
                    "are kept and the annotations and split lists are rewritten complete.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--num-videos", type=int, default=d.num_videos,
                   help="number of videos (actions are balanced: video i has action i %% 6)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="collection seed; video i is generated from SeedSequence([seed, i])")
    p.add_argument("--size", type=int, default=d.size, help="frame width and height in pixels (even)")
    p.add_argument("--fps", type=float, default=d.fps, help="video frame rate")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds per video")
    p.add_argument("--sample-rate", type=int, default=d.sample_rate, help="audio sample rate in Hz")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: all CPUs); 1 generates in this process")
    p.add_argument("--object-scale", type=float, default=d.object_scale,
                   help="object diameter as a fraction of the frame size (at zoom 1)")
    p.add_argument("--max-distractors", type=int, default=d.max_distractors,
                   help="each video has 0..N silent distractor objects of other classes")
    p.add_argument("--clips-per-group", type=int, default=d.clips_per_group,
                   help="clips per group gNN within an action (splits never divide a group)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of groups in vallist01")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help="share of groups in testlist01")
    p.add_argument("--noise-level", type=float, default=d.noise_level,
                   help="standard deviation of the audio's white-noise floor")
    p.add_argument("--crf", type=int, default=d.crf, help="x264 constant rate factor (lower = better)")
    p.add_argument("--negatives", action="store_true",
                   help="also write splits/test_plus_silent.csv, the test split's off-screen-sound "
                        "negatives in SLAVC's layout (the videos are the same with or without it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """``avlearn synth`` / ``python -m data_prep.synth``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        cfg = SynthConfig(
            out=args.out, num_videos=args.num_videos, seed=args.seed, size=args.size, fps=args.fps,
            duration=args.duration, sample_rate=args.sample_rate, workers=args.workers,
            object_scale=args.object_scale, max_distractors=args.max_distractors,
            clips_per_group=args.clips_per_group, val_fraction=args.val_fraction,
            test_fraction=args.test_fraction, noise_level=args.noise_level, crf=args.crf,
            negatives=args.negatives)
        path = generate(cfg, progress=not args.no_progress)
    except ValueError as err:
        print(f"avlearn synth: {err}", file=sys.stderr)
        return 2
    doc = json.loads(path.read_text())
    print(f"wrote {len(doc['videos'])} videos to {cfg.out} "
          f"(train {doc['splits']['train']}, val {doc['splits']['val']}, test {doc['splits']['test']}); "
          f"annotations: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
