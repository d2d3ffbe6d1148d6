"""The synthetic audio-visual collection: layout, determinism, boxes vs pixels, AV synchrony, CLI."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avlearn.data.decode import ClipSpec, decode_clip
from data_prep import synth
from data_prep.synth import ACTIONS, CLASSES, SynthConfig, generate, render_video

SIZE, FPS, DURATION, SR = 64, 25.0, 2.0, 16000
NUM_FRAMES = round(FPS * DURATION)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthConfig, dict[str, Any]]:
    """18 videos (3 per action, one clip per group, so groups 1/2/3 are test/val/train)."""
    cfg = SynthConfig(out=tmp_path_factory.mktemp("synth"), num_videos=18, seed=3, size=SIZE, fps=FPS,
                      duration=DURATION, sample_rate=SR, workers=2, clips_per_group=1)
    path = generate(cfg, progress=False)
    return cfg, json.loads(path.read_text())


def _decode_all(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames ``(T, H, W, 3)`` uint8-valued floats and the whole mono waveform ``(S,)``."""
    spec = ClipSpec(num_frames=NUM_FRAMES, fps=FPS, size=None, audio_seconds=DURATION, sample_rate=SR)
    clip = decode_clip(path, 0.0, spec, backend="pyav")
    video = clip.video.permute(1, 2, 3, 0).numpy() * 255.0
    return video, clip.audio.numpy()


def _class_pixels(frame: np.ndarray, color: tuple[int, int, int], tol: float = 60.0) -> np.ndarray:
    """Pixels near the (saturated) class colour; textures' darker shades are left out. Shape ``(H, W)``."""
    return np.asarray(np.linalg.norm(frame - np.asarray(color, dtype=np.float64), axis=-1) < tol)


# ---------------------------------------------------------------------------------------- layout


def test_layout_and_split_files(collection: tuple[SynthConfig, dict[str, Any]]) -> None:
    cfg, doc = collection
    root = Path(cfg.out)
    class_ind = (root / "splits" / "classInd.txt").read_text().splitlines()
    assert class_ind == [f"{i + 1} {a}" for i, a in enumerate(ACTIONS)]
    label_of = {a: i + 1 for i, a in enumerate(ACTIONS)}
    name_re = re.compile(r"^(\w+)/v_(\w+)_g(\d\d)_c(\d\d)\.mp4$")

    listed: dict[str, str] = {}
    groups: dict[str, set[int]] = {}
    for split, fname in (("train", "trainlist01.txt"), ("val", "vallist01.txt"), ("test", "testlist01.txt")):
        lines = (root / "splits" / fname).read_text().splitlines()
        assert lines, f"{fname} is empty"
        groups[split] = set()
        for line in lines:
            parts = line.split(" ")
            if split == "test":
                assert len(parts) == 1, f"UCF testlists have no label: {line!r}"
            else:
                assert len(parts) == 2 and int(parts[1]) == label_of[parts[0].split("/")[0]], line
            m = name_re.match(parts[0])
            assert m and m.group(1) == m.group(2), line
            assert parts[0] not in listed, f"{parts[0]} in two splits"
            listed[parts[0]] = split
            groups[split].add(int(m.group(3)))
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])

    on_disk = {str(p.relative_to(root / "videos")) for p in (root / "videos").rglob("*.mp4")}
    assert on_disk == set(listed)
    assert not list(root.rglob("*.tmp*"))
    assert doc["format_version"] == synth.FORMAT_VERSION
    assert doc["actions"] == list(ACTIONS)
    assert [c["name"] for c in doc["classes"]] == [c.name for c in CLASSES]
    assert len(doc["videos"]) == cfg.num_videos
    assert doc["splits"] == {s: sum(v == s for v in listed.values()) for s in ("train", "val", "test")}
    for ann in doc["videos"]:
        assert listed[ann["file"].removeprefix("videos/")] == ann["split"]
        assert ann["action_label"] == label_of[ann["action"]]
        assert CLASSES[ann["class_label"]].name == ann["class"]
        assert ann["class"] not in [d["class"] for d in ann["distractors"]]
        assert len(ann["bbox"]) == len(ann["motion"]) == ann["num_frames"] == NUM_FRAMES
        assert (ann["width"], ann["height"], ann["sample_rate"]) == (SIZE, SIZE, SR)
        assert all(b is not None for b in ann["bbox"]), "the sounding object is always visible"
        for d in ann["distractors"]:
            assert len(d["bbox"]) == NUM_FRAMES
    assert {a["action"] for a in doc["videos"]} == set(ACTIONS)


# ---------------------------------------------------------------------------------------- determinism


def test_render_is_deterministic_and_seed_dependent() -> None:
    cfg = SynthConfig(num_videos=6, seed=11, size=SIZE, fps=FPS, duration=1.0)
    a, b = render_video(cfg, 4), render_video(cfg, 4)
    assert a.frames is not None and b.frames is not None
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.annotation == b.annotation
    other = render_video(SynthConfig(num_videos=6, seed=12, size=SIZE, fps=FPS, duration=1.0), 4)
    assert other.frames is not None
    assert not np.array_equal(a.frames, other.frames)
    assert other.annotation["bbox"] != a.annotation["bbox"]
    assert render_video(cfg, 10).annotation["bbox"] != a.annotation["bbox"]  # same action, other video


def test_files_independent_of_workers_and_count(collection: tuple[SynthConfig, dict[str, Any]],
                                                tmp_path: Path) -> None:
    cfg, doc = collection
    small = SynthConfig(out=tmp_path / "again", num_videos=3, seed=cfg.seed, size=SIZE, fps=FPS,
                        duration=DURATION, sample_rate=SR, workers=1, clips_per_group=1)
    again = json.loads(generate(small, progress=False).read_text())
    for i in range(3):
        old, new = dict(doc["videos"][i]), dict(again["videos"][i])
        old.pop("split"), new.pop("split")  # the only field that depends on the collection's size
        assert old == new
        va, aa = _decode_all(Path(cfg.out) / old["file"])
        vb, ab = _decode_all(Path(small.out) / new["file"])
        np.testing.assert_array_equal(va, vb)
        np.testing.assert_array_equal(aa, ab)
    other = SynthConfig(out=tmp_path / "other", num_videos=1, seed=cfg.seed + 1, size=SIZE, fps=FPS,
                        duration=DURATION, sample_rate=SR, workers=1)
    diff = json.loads(generate(other, progress=False).read_text())["videos"][0]
    assert diff["bbox"] != doc["videos"][0]["bbox"]
    assert not np.array_equal(_decode_all(Path(other.out) / diff["file"])[0],
                              _decode_all(Path(cfg.out) / doc["videos"][0]["file"])[0])


# ---------------------------------------------------------------------------------------- boxes


def test_boxes_are_tight_on_rendered_pixels() -> None:
    """Uncompressed render: every pixel of the class's two shades is inside the box and touches its edges."""
    cfg = SynthConfig(num_videos=12, seed=5, size=SIZE, fps=FPS, duration=1.0, max_distractors=2)
    for index in range(12):
        r = render_video(cfg, index)
        assert r.frames is not None
        shades = synth.class_shades(CLASSES[r.annotation["class_label"]])
        for frame, box in zip(r.frames, r.annotation["bbox"], strict=True):
            mask = np.zeros(frame.shape[:2], dtype=bool)
            for s in shades:
                mask |= (frame == s).all(axis=-1)
            ys, xs = np.nonzero(mask)
            assert box is not None and len(xs) > 0
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box, (index, r.annotation["action"])


def test_object_scale_sets_object_size() -> None:
    sizes = {}
    for scale in (0.2, 0.4):
        cfg = SynthConfig(num_videos=6, seed=2, size=SIZE, fps=FPS, duration=0.4, object_scale=scale)
        ann = render_video(cfg, ACTIONS.index("Resting")).annotation
        x0, y0, x1, y1 = ann["bbox"][0]
        sizes[scale] = max(x1 - x0, y1 - y0)
        # every shape spans 0.85-1.0 of the object's diameter
        assert 0.8 * scale * SIZE - 1 <= sizes[scale] <= scale * SIZE + 1, (scale, ann["class"])
    assert sizes[0.4] > 1.6 * sizes[0.2]


def test_boxes_match_decoded_pixels(collection: tuple[SynthConfig, dict[str, Any]]) -> None:
    cfg, doc = collection
    for ann in doc["videos"]:
        video, _ = _decode_all(Path(cfg.out) / ann["file"])
        color = CLASSES[ann["class_label"]].color
        for i in range(0, NUM_FRAMES, 7):
            x0, y0, x1, y1 = ann["bbox"][i]
            near = _class_pixels(video[i], color)
            inside = near[y0:y1, x0:x1].sum()
            # yuv420p halves the chroma resolution: colour bleeds up to 2 px past the box
            outside = near.sum() - near[max(0, y0 - 2): y1 + 2, max(0, x0 - 2): x1 + 2].sum()
            area = (x1 - x0) * (y1 - y0)
            assert inside > 0.12 * area, (ann["video_id"], i, inside, area)
            assert outside < 0.05 * inside + 3, (ann["video_id"], i, inside, outside)
            box_mean = video[i, y0:y1, x0:x1].reshape(-1, 3).mean(0)
            rest = np.ones(near.shape, dtype=bool)
            rest[y0:y1, x0:x1] = False
            out_mean = video[i][rest].mean(0)
            assert np.linalg.norm(box_mean - color) < np.linalg.norm(out_mean - color)


# ---------------------------------------------------------------------------------------- audio


def _speed_from_boxes(boxes: list[list[int]]) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    half = (b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 4
    return (np.hypot(np.gradient(cx), np.gradient(cy)) + np.abs(np.gradient(half))) * FPS


def _rms_envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """RMS over a one-frame window centred on each frame time. Shape ``(T,)``."""
    hop = SR / FPS
    out = np.empty(n_frames)
    for i in range(n_frames):
        a, b = max(0, round(i * hop - hop / 2)), round(i * hop + hop / 2)
        out[i] = np.sqrt(np.mean(audio[a:b] ** 2))
    return out


def _smooth(x: np.ndarray) -> np.ndarray:
    return np.convolve(x, np.ones(3) / 3, mode="same")


def test_audio_loudness_follows_motion(collection: tuple[SynthConfig, dict[str, Any]]) -> None:
    cfg, doc = collection
    lags = range(-5, 6)
    total = np.zeros(len(lags))
    per_video = []
    for ann in doc["videos"]:
        if ann["action"] == "Resting":
            assert max(ann["motion"]) == 0 and ann["audio_events"] == []
            continue
        _, audio = _decode_all(Path(cfg.out) / ann["file"])
        speed = _smooth(_speed_from_boxes(ann["bbox"]))[2:-2]
        env = _smooth(_rms_envelope(audio, NUM_FRAMES))[2:-2]
        corr = []
        for lag in lags:
            s = speed[max(0, -lag): len(speed) - max(0, lag)]
            e = env[max(0, lag): len(env) - max(0, -lag)]
            corr.append(float(np.corrcoef(s, e)[0, 1]))
        per_video.append(corr[lags.index(0)])
        total += np.asarray(corr)
    assert np.median(per_video) > 0.5, per_video
    assert list(lags)[int(np.argmax(total))] == 0, total


def test_audio_events_are_energy_peaks(collection: tuple[SynthConfig, dict[str, Any]]) -> None:
    cfg, doc = collection
    ratios = []
    for ann in doc["videos"]:
        if not ann["audio_events"]:
            continue
        assert ann["action"] in ("Bouncing", "Shaking")
        _, audio = _decode_all(Path(cfg.out) / ann["file"])
        for t in ann["audio_events"]:
            i = round(t * SR)
            if i < 0.05 * SR or i > len(audio) - 0.05 * SR:
                continue
            after = np.sqrt(np.mean(audio[i: i + round(0.025 * SR)] ** 2))
            before = np.sqrt(np.mean(audio[i - round(0.045 * SR): i - round(0.01 * SR)] ** 2))
            ratios.append(after / before)
    assert len(ratios) >= 5
    assert np.median(ratios) > 1.8, ratios


def test_class_sounds_are_distinct() -> None:
    """Nearest-class-mean on log band energies separates all classes across pitch jitter."""
    n, bands = SR, np.geomspace(50, SR / 2, 25)
    freqs = np.fft.rfftfreq(n, 1 / SR)

    def feat(cls: synth.ObjectClass, seed: int) -> np.ndarray:
        y = synth._source(cls.sound, np.random.default_rng(seed), n, SR)
        p = np.abs(np.fft.rfft(y)) ** 2
        e = np.array([p[(freqs >= a) & (freqs < b)].sum() for a, b in itertools.pairwise(bands)])
        return np.log(e / e.sum() + 1e-3)

    train = np.stack([np.mean([feat(c, s) for s in range(3)], axis=0) for c in CLASSES])
    for k, c in enumerate(CLASSES):
        for s in range(3, 6):
            assert int(np.argmin(np.linalg.norm(train - feat(c, s), axis=1))) == k, c.name


# ---------------------------------------------------------------------------------------- decoding, CLI


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_decodes_with_both_backends(collection: tuple[SynthConfig, dict[str, Any]], backend: str) -> None:
    cfg, doc = collection
    spec = ClipSpec(num_frames=8, fps=8.0, size=SIZE, audio_seconds=1.0, sample_rate=SR)
    for ann in doc["videos"][:3]:
        clip = decode_clip(Path(cfg.out) / ann["file"], 0.5, spec, backend=backend)
        assert tuple(clip.video.shape) == (3, 8, SIZE, SIZE)
        assert tuple(clip.audio.shape) == (SR,)
        assert float(clip.audio.abs().max()) > 0.01
        ref = decode_clip(Path(cfg.out) / ann["file"], 0.5, spec, backend="pyav")
        assert float((clip.video - ref.video).abs().mean()) < 0.02


def test_cli_help_generate_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        synth.main(["--help"])
    assert exc.value.code == 0
    assert "--object-scale" in capsys.readouterr().out

    out = tmp_path / "cli"
    args = ["--out", str(out), "--num-videos", "3", "--size", "32", "--duration", "1", "--workers", "1",
            "--object-scale", "0.4", "--max-distractors", "1", "--seed", "7", "--no-progress"]
    assert synth.main(args) == 0
    doc = json.loads((out / "annotations.json").read_text())
    assert len(doc["videos"]) == 3 and doc["config"]["object_scale"] == 0.4
    files = [out / v["file"] for v in doc["videos"]]
    box = doc["videos"][5 % 3]["bbox"][0]
    assert box[2] - box[0] >= 0.3 * 32 * 0.4  # object scale reaches the pixels

    stamps = [f.stat().st_mtime_ns for f in files[:2]]
    removed = files[2].read_bytes()
    files[2].unlink()
    assert synth.main(args) == 0  # resume: keeps two files, rewrites the missing one identically
    assert [f.stat().st_mtime_ns for f in files[:2]] == stamps
    assert files[2].read_bytes() == removed
    assert json.loads((out / "annotations.json").read_text()) == doc

    assert synth.main([*args[:3], "5", *args[4:]]) == 0  # more videos into the same folder
    assert len(json.loads((out / "annotations.json").read_text())["videos"]) == 5
    assert synth.main(["--out", str(out), "--size", "48", "--no-progress"]) == 2  # other content: refused
    assert "different options" in capsys.readouterr().err


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[int(np.argmax(spec))])


def _tone_videos(cfg: SynthConfig, action: str, count: int) -> list[synth.Rendered]:
    """Rendered (audio only) videos of ``action`` whose sounding object is the pure tone class."""
    found = []
    for i in range(ACTIONS.index(action), 600, len(ACTIONS)):
        r = render_video(cfg, i, with_frames=False)
        if r.annotation["class"] == "red_disc":
            found.append(r)
            if len(found) == count:
                break
    assert len(found) == count, f"too few {action} videos of the tone class"
    return found


def test_actions_are_audible_crossing_pitch_falls_zoom_pitch_follows_growth() -> None:
    cfg = SynthConfig(out=Path("unused"), num_videos=600, seed=5, size=SIZE, fps=FPS, duration=3.0,
                      sample_rate=SR, noise_level=0.0)
    win = SR // 4
    for r in _tone_videos(cfg, "Crossing", 2):  # higher at the start of the pass than at its end
        start, end = _peak_hz(r.audio[:win], SR), _peak_hz(r.audio[-win:], SR)
        assert start / end > 1.25, (start, end)
    for r in _tone_videos(cfg, "Zooming", 2):  # pitch up while the box grows, down while it shrinks
        widths = np.array([b[2] - b[0] for b in r.annotation["bbox"]], dtype=float)
        growth = np.gradient(widths)
        hops = range(0, len(r.audio) - win, win // 2)
        pitch = np.array([_peak_hz(r.audio[h:h + win], SR) for h in hops])
        at = np.array([(h + win / 2) / SR for h in hops])
        growth_at = np.interp(at, np.arange(len(widths)) / FPS, growth)
        assert np.corrcoef(pitch, growth_at)[0, 1] > 0.5
    for r in _tone_videos(cfg, "Resting", 1):  # a still object keeps its pitch
        assert _peak_hz(r.audio[:win], SR) == pytest.approx(_peak_hz(r.audio[-win:], SR), rel=0.02)


# ---------------------------------------------------------------------------------------- negatives


def test_negatives_option_adds_a_list_and_changes_no_file(collection: tuple[SynthConfig, dict[str, Any]],
                                                          tmp_path: Path) -> None:
    import dataclasses

    cfg, doc = collection
    with_neg = dataclasses.replace(cfg, out=tmp_path / "neg", negatives=True)
    generate(with_neg, progress=False)
    plain = {p.relative_to(cfg.out): p.read_bytes() for p in Path(cfg.out).rglob("*") if p.is_file()}
    made = {p.relative_to(with_neg.out): p.read_bytes() for p in Path(with_neg.out).rglob("*") if p.is_file()}
    listed = Path("splits/test_plus_silent.csv")
    assert listed not in plain and set(made) == {*plain, listed}
    assert all(made[name] == data for name, data in plain.items())  # byte-identical videos, lists, json
    assert "negatives" not in json.loads(plain[Path("synth_config.json")])  # as before the option

    lines = made[listed].decode().splitlines()
    assert lines[0] == "video,audio,label"
    by_id = {v["video_id"]: v for v in doc["videos"]}
    tests = [v for v in doc["videos"] if v["split"] == "test"]
    rows = [line.split(",") for line in lines[1:]]
    assert rows and all(label == "non-sounding" for _, _, label in rows)
    for video, donor, _ in rows:
        ann, mid = by_id[video], NUM_FRAMES // 2
        in_view = {ann["class"]} | {d["class"] for d in ann["distractors"] if d["bbox"][mid] is not None}
        assert by_id[donor]["split"] == "test" and by_id[donor]["class"] not in in_view
    eligible = [v for v in tests if any(
        d["class"] not in {v["class"]} | {x["class"] for x in v["distractors"] if x["bbox"][NUM_FRAMES // 2]}
        for d in tests)]
    assert len(rows) == len(eligible)
    assert synth.negative_pairs(doc["videos"], cfg.seed) == [(a, b) for a, b, _ in rows]  # fixed protocol
