"""VGG-SS and Flickr-SoundNet in their released layouts, with SLAVC's negatives, end to end."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from PIL import Image

from avlearn.cli import main as avlearn_main
from avlearn.config import ConfigError, to_dict
from avlearn.localization.benchmarks import (
    BENCHMARK_FORMATS,
    AnnotationError,
    BenchmarkItem,
    benchmark_items,
    read_extended_list,
    read_flickr_annotation,
    read_vggss_annotations,
)
from avlearn.models.checkpoint import save_encoders
from avlearn.models.registry import ModelConfig, build_av_model

IDS = ["a0001", "b0002", "c0003"]


def _wav(path: Path, freq: float, seconds: float = 3.0, rate: int = 16000) -> None:
    samples = (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())


def _media(root: Path) -> None:
    """frames/<id>.jpg (a red square on grey) and audio/<id>.wav for every id but the last one's audio."""
    for k, name in enumerate(IDS):
        img = np.full((96, 128, 3), 100, dtype=np.uint8)
        img[20 + 10 * k : 60 + 10 * k, 30:70] = (220, 30, 30)
        (root / "frames").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "frames" / f"{name}.jpg")
        if k < 2:
            _wav(root / "audio" / f"{name}.wav", 300.0 * (k + 1))


def _flickr_xml(boxes: list[list[int]]) -> str:
    """One root child per annotator, each with a <bbox>: a label, then xmin, ymin, xmax, ymax (256 px)."""
    parts = "".join(
        f"<object><bbox><label>{i}</label><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bbox></object>" for i, b in enumerate(boxes))
    return f'<?xml version="1.0" ?><annotation>{parts}</annotation>'


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(video_arch="r2plus1d_tiny", audio_arch="avid_spec_cnn9_tiny", embed_dim=16)
    data = {"num_frames": 4, "fps": 8.0, "audio_seconds": 1.0, "video_aug": {"size": 48}}
    return save_encoders(build_av_model(cfg), tmp_path / "tiny.safetensors", {"model": to_dict(cfg),
                                                                              "data": data})


def _lists(tmp_path: Path) -> tuple[Path, Path]:
    test_list = tmp_path / "test.csv"
    test_list.write_text("".join(f"{name}\n" for name in IDS))
    extended = tmp_path / "test_plus_silent.csv"
    extended.write_text("video,audio,label\na0001,b0002,non-sounding\nb0002,a0001,non-sounding\n"
                        "a0001,a0001,sounding\n")
    return test_list, extended


def test_vggss_json_boxes_and_malformed_entries(tmp_path: Path) -> None:
    path = tmp_path / "vggss.json"
    path.write_text(json.dumps([
        {"file": "a0001", "class": "dog barking", "bbox": [[0.25, 0.5, 0.75, 1.0]]},
        {"file": "b0002", "class": "cat", "bbox": [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]}]))
    boxes = read_vggss_annotations(path)
    assert boxes["b0002"] == [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]
    path.write_text(json.dumps([{"file": "a0001", "bbox": [[0.1, 0.2, 0.3, 0.4]]},
                                {"file": "b0002", "bbox": [[0.1, 0.2, 0.3]]}]))
    with pytest.raises(AnnotationError, match=r"vggss.json: entry 1 \(b0002\), bbox 0"):
        read_vggss_annotations(path)
    path.write_text(json.dumps([{"name": "a0001"}]))
    with pytest.raises(AnnotationError, match="entry 0 needs a 'file'"):
        read_vggss_annotations(path)


def test_flickr_xml_annotators_and_malformed_boxes(tmp_path: Path) -> None:
    path = tmp_path / "a0001.xml"
    path.write_text(_flickr_xml([[0, 0, 128, 128], [64, 64, 192, 192]]))
    assert read_flickr_annotation(path) == [[0, 0, 128, 128], [64, 64, 192, 192]]
    items, _ = _items_of(tmp_path, "flickr", {"a0001": [[0, 0, 128, 128], [64, 64, 192, 192]]})
    gt = items[0].gt
    assert gt is not None and gt.shape == (224, 224)
    assert gt[70, 70] == 1.0 and gt[10, 10] == 0.5 and gt[200, 200] == 0.0  # both agree: 1, one: 0.5
    path.write_text(_flickr_xml([[0, 0, 128, 128]]).replace("<xmax>128</xmax>", "<xmax>wide</xmax>"))
    with pytest.raises(AnnotationError, match=r"a0001.xml: <object> 0, <bbox> 0: .*xmin, ymin, xmax, ymax"):
        read_flickr_annotation(path)
    path.write_text("<annotation><object>")
    with pytest.raises(AnnotationError, match="a0001.xml: cannot read"):
        read_flickr_annotation(path)


def _items_of(tmp_path: Path, fmt: Literal["vggss", "flickr"],
              boxes: dict[str, list[list[int]]]) -> tuple[list[BenchmarkItem], dict[str, int]]:
    root = tmp_path / "data"
    _media(root)
    (root / "Annotations").mkdir(exist_ok=True)
    for name, bb in boxes.items():
        (root / "Annotations" / f"{name}.xml").write_text(_flickr_xml(bb))
    test_list = tmp_path / "one.csv"
    test_list.write_text("".join(f"{n}\n" for n in boxes))
    return benchmark_items(fmt, root, root / "Annotations", test_list)


def test_an_unknown_format_is_refused_not_read_as_flickr(tmp_path: Path) -> None:
    assert set(BENCHMARK_FORMATS) == {"vggss", "flickr"}
    with pytest.raises(ConfigError, match=r"unknown localization benchmark format 'vgg-ss'.*Did you mean "
                                          r"'vggss'.*names: flickr, vggss"):
        _items_of(tmp_path, "vgg-ss", {"a0001": [[0, 0, 128, 128]]})  # type: ignore[arg-type]
    flickr, _ = _items_of(tmp_path, "flickr", {"a0001": [[0, 0, 128, 128]]})
    assert len(flickr) == 1 and flickr[0].gt is not None


def test_extended_list_keeps_non_sounding_rows(tmp_path: Path) -> None:
    _, extended = _lists(tmp_path)
    assert read_extended_list(extended) == [("a0001", "b0002"), ("b0002", "a0001")]
    extended.write_text("video,audio,label\na0001\n")
    with pytest.raises(AnnotationError, match="test_plus_silent.csv:2"):
        read_extended_list(extended)


@pytest.mark.parametrize("fmt", ["vggss", "flickr"])
def test_evaluate_a_benchmark_with_negatives(fmt: str, tmp_path: Path, checkpoint: Path) -> None:
    root = tmp_path / "data"
    _media(root)
    if fmt == "vggss":
        annotations = tmp_path / "vggss.json"
        annotations.write_text(json.dumps([{"file": n, "class": "x", "bbox": [[0.2, 0.2, 0.6, 0.7]]}
                                           for n in IDS]))
    else:
        annotations = root / "Annotations"
        annotations.mkdir()
        for n in IDS:
            (annotations / f"{n}.xml").write_text(_flickr_xml([[60, 50, 140, 160], [64, 40, 150, 170]]))
    test_list, extended = _lists(tmp_path)
    out = tmp_path / "r.json"
    assert avlearn_main(["evaluate", "localization", "--format", fmt, "--checkpoint", str(checkpoint),
                         "--root", str(root), "--annotations", str(annotations), "--test-list",
                         str(test_list), "--extended", str(extended), "--silent", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["missing_files"] == 1  # c0003 has no audio
    assert report["trials"] == {"positive": 2, "non-sounding": 2, "silent": 2}
    assert report["model"]["n"] == 2 and 0.0 <= report["model"]["auc"] <= 1.0
    for method in ("model", "center_box"):
        scores = report["negatives"][method]
        for kind in ("non-sounding", "silent"):
            assert scores[kind]["n_negatives"] == 2 and 0.0 <= scores[kind]["max_f1"] <= 1.0
    assert report["negatives"]["center_box"]["confidence"] == {"positive": 1.0, "non-sounding": 1.0,
                                                               "silent": 1.0}


def test_evaluate_names_a_malformed_annotation(tmp_path: Path, checkpoint: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    _media(root)
    annotations = tmp_path / "vggss.json"
    annotations.write_text(json.dumps([{"file": "a0001", "bbox": [[0.2, 0.2, 0.6]]}]))
    test_list, _ = _lists(tmp_path)
    assert avlearn_main(["evaluate", "localization", "--format", "vggss", "--checkpoint", str(checkpoint),
                         "--root", str(root), "--annotations", str(annotations),
                         "--test-list", str(test_list)]) == 1
    assert "vggss.json: entry 0 (a0001), bbox 0" in capsys.readouterr().err
