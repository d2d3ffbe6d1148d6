"""Split-file parsers on tiny generated fixtures: formats, folds, errors naming file:line, subsets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from avlearn.config import ConfigError, from_dict
from avlearn.data.manifest import VideoInfo
from avlearn.data.splits import (
    SPLIT_FORMATS,
    DatasetConfig,
    LabelledSplit,
    SplitFormatError,
    esc50_split,
    folder_split,
    hmdb51_split,
    kinetics_split,
    load_split,
    read_class_index,
    subsample_per_class,
    synthetic_split,
    to_manifest_rows,
    ucf101_split,
)
from avlearn.media import write_av


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------- UCF-101


@pytest.fixture
def ucf(tmp_path: Path) -> Path:
    d = tmp_path / "ucfTrainTestlist"
    # CRLF line ends, as the original files
    _write(d / "classInd.txt", "1 ApplyEyeMakeup\r\n2 Archery\r\n3 HandstandPushups\r\n")
    for fold in (1, 2, 3):
        g_test = f"{fold:02d}"
        _write(d / f"trainlist0{fold}.txt",
               "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g09_c02.avi 2\n"
               "HandstandPushups/v_HandStandPushups_g10_c01.avi 3\n\n")
        _write(d / f"testlist0{fold}.txt",
               f"ApplyEyeMakeup/v_ApplyEyeMakeup_g{g_test}_c01.avi\nArchery/v_Archery_g{g_test}_c03.avi\n")
    return d


def test_ucf101_train_and_test(ucf: Path) -> None:
    train = ucf101_split(ucf, fold=1, split="train")
    assert train.classes == ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    assert train.items == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
                           ("Archery/v_Archery_g09_c02.avi", 1),
                           ("HandstandPushups/v_HandStandPushups_g10_c01.avi", 2)]
    assert train.root == str(ucf.parent / "UCF-101")
    assert train.class_to_idx == {"ApplyEyeMakeup": 0, "Archery": 1, "HandstandPushups": 2}
    assert train.counts() == [1, 1, 1]
    test = ucf101_split(ucf, fold=3, split="test", video_root="/data/ucf")
    assert test.items == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi", 0),
                          ("Archery/v_Archery_g03_c03.avi", 1)]
    assert test.root == "/data/ucf" and "fold 3" in test.name
    with pytest.raises(ValueError, match="fold must be one of"):
        ucf101_split(ucf, fold=4)
    with pytest.raises(ValueError, match="split must be one of"):
        ucf101_split(ucf, split="val")  # type: ignore[arg-type]


@pytest.mark.parametrize("file,text,message", [
    ("trainlist01.txt", "ApplyEyeMakeup/v_a.avi 1\nArchery/v_b.avi x\n",
     r"trainlist01.txt:2: label 'x'.*1\.\.3"),
    ("trainlist01.txt", "ApplyEyeMakeup/v_a.avi 1 extra\n", r"trainlist01.txt:1: 3 fields"),
    ("trainlist01.txt", "ApplyEyeMakeup/v_a.avi 2\n",
     r"trainlist01.txt:1: label 2 \(Archery\) differs from folder"),
    ("testlist01.txt", "\nArchery/v_b.avi\nBowling/v_c.avi\n", r"testlist01.txt:3: folder 'Bowling'"),
    ("classInd.txt", "1 ApplyEyeMakeup\n3 Archery\n", r"classInd.txt:2: class id 3 out of order"),
    ("classInd.txt", "1 ApplyEyeMakeup\nArchery\n", r"classInd.txt:2: cannot parse 'Archery'"),
])
def test_ucf101_malformed_lines_name_file_and_line(ucf: Path, file: str, text: str, message: str) -> None:
    _write(ucf / file, text)
    split = "test" if file.startswith("test") else "train"
    with pytest.raises(SplitFormatError, match=message):
        ucf101_split(ucf, fold=1, split=split)  # type: ignore[arg-type]


def test_missing_split_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        read_class_index(tmp_path / "classInd.txt")


def test_synthetic_split_reads_the_generator_layout(tmp_path: Path) -> None:
    splits = tmp_path / "synth" / "splits"
    _write(splits / "classInd.txt", "1 Bouncing\n2 Circling\n")
    _write(splits / "trainlist01.txt",
           "Bouncing/v_Bouncing_g03_c01.mp4 1\nCircling/v_Circling_g03_c01.mp4 2\n")
    _write(splits / "vallist01.txt", "Circling/v_Circling_g02_c01.mp4 2\n")
    _write(splits / "testlist01.txt", "Bouncing/v_Bouncing_g01_c01.mp4\n")
    root = tmp_path / "synth"
    assert synthetic_split(root, "train").items == [("Bouncing/v_Bouncing_g03_c01.mp4", 0),
                                                    ("Circling/v_Circling_g03_c01.mp4", 1)]
    assert synthetic_split(root, "val").items == [("Circling/v_Circling_g02_c01.mp4", 1)]
    test = synthetic_split(root, "test")
    assert test.items == [("Bouncing/v_Bouncing_g01_c01.mp4", 0)] and test.root == str(root / "videos")


# ------------------------------------------------------------------------------------- HMDB-51


def test_hmdb51_codes_and_folds(tmp_path: Path) -> None:
    d = tmp_path / "testTrainMulti_7030_splits"
    for fold in (1, 2):
        code = 1 if fold == 1 else 2
        _write(d / f"brush_hair_test_split{fold}.txt", f"a.avi {code} \nb.avi 2 \nc.avi 0 \n")
        _write(d / f"cartwheel_test_split{fold}.txt", "d.avi 1 \ne.avi 1 \n")
    train = hmdb51_split(d, fold=1, split="train", video_root="/v")
    assert train.classes == ["brush_hair", "cartwheel"]
    assert train.items == [("brush_hair/a.avi", 0), ("cartwheel/d.avi", 1), ("cartwheel/e.avi", 1)]
    assert hmdb51_split(d, fold=1, split="test").items == [("brush_hair/b.avi", 0)]
    assert hmdb51_split(d, fold=2, split="test").items == [("brush_hair/a.avi", 0), ("brush_hair/b.avi", 0)]
    with pytest.raises(FileNotFoundError, match="_test_split3.txt"):
        hmdb51_split(d, fold=3)
    _write(d / "cartwheel_test_split1.txt", "d.avi 1\ne.avi 3\n")
    with pytest.raises(SplitFormatError, match=r"cartwheel_test_split1.txt:2: .*code 0 \(unused\)"):
        hmdb51_split(d, fold=1)


# ------------------------------------------------------------------------------------- Kinetics

_KINETICS_CSV = """label,youtube_id,time_start,time_end,split
abseiling,--07WQ2iBlw,1,11,train
air drumming,-0ZEPeTdlao,25,35,train
abseiling,-3B32lodo2M,59,69,val
air drumming,0cVRYtNEdAk,0,10,validate
"""


def test_kinetics_csv_layouts_and_search(tmp_path: Path) -> None:
    csv_path = _write(tmp_path / "k" / "kinetics.csv", _KINETICS_CSV)
    train = kinetics_split(csv_path, tmp_path / "videos", split="train", layout="{split}/{label}/{name}")
    assert train.classes == ["abseiling", "air drumming"]
    assert train.items == [("train/abseiling/--07WQ2iBlw_000001_000011.mp4", 0),
                           ("train/air drumming/-0ZEPeTdlao_000025_000035.mp4", 1)]
    val = kinetics_split(csv_path, tmp_path / "videos", split="val", layout="{name}")
    assert val.items == [("-3B32lodo2M_000059_000069.mp4", 0), ("0cVRYtNEdAk_000000_000010.mp4", 1)]
    assert val.classes == train.classes  # label ids from the whole CSV
    assert len(kinetics_split(csv_path, tmp_path / "videos")) == 4  # no split filter

    # search: each row takes the first template whose file exists
    (tmp_path / "videos" / "val" / "air_drumming").mkdir(parents=True)
    (tmp_path / "videos" / "val" / "air_drumming" / "0cVRYtNEdAk_000000_000010.mp4").write_bytes(b"x")
    (tmp_path / "videos" / "-3B32lodo2M_000059_000069.mp4").write_bytes(b"x")
    searched = kinetics_split(csv_path, tmp_path / "videos", split="val")
    assert searched.items == [("-3B32lodo2M_000059_000069.mp4", 0),
                              ("val/air_drumming/0cVRYtNEdAk_000000_000010.mp4", 1)]


def test_kinetics_csv_errors(tmp_path: Path) -> None:
    bad_header = _write(tmp_path / "a.csv", "label,youtube_id,start,end\nx,y,1,2\n")
    with pytest.raises(SplitFormatError, match=r"a.csv:1: header .* lacks \['time_start', 'time_end'\]"):
        kinetics_split(bad_header)
    bad_time = _write(tmp_path / "b.csv", _KINETICS_CSV + "abseiling,zzz,one,11,train\n")
    with pytest.raises(SplitFormatError, match=r"b.csv:6: time_start='one'"):
        kinetics_split(bad_time)
    short = _write(tmp_path / "c.csv", _KINETICS_CSV + "abseiling,zzz\n")
    with pytest.raises(SplitFormatError, match=r"c.csv:6: 5 columns expected"):
        kinetics_split(short)
    with pytest.raises(SplitFormatError, match=r"label 'air drumming' not in the given classes"):
        kinetics_split(_write(tmp_path / "d.csv", _KINETICS_CSV), classes=["abseiling"])


# ------------------------------------------------------------------------------------- ESC-50


def _esc50(root: Path, extra: str = "") -> Path:
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    categories = {0: "dog", 1: "rooster", 41: "chainsaw"}
    for fold in range(1, 6):
        for target, cat in categories.items():
            lines.append(f"{fold}-100{target}-A-0.wav,{fold},{target},{cat},{target != 1},100{target},A")
    _write(root / "meta" / "esc50.csv", "\n".join(lines) + "\n" + extra)
    return root


def test_esc50_folds(tmp_path: Path) -> None:
    root = _esc50(tmp_path / "ESC-50")
    test = esc50_split(root, fold=2, train=False)
    assert test.classes == ["dog", "rooster", "chainsaw"]  # ordered by target, re-indexed 0..2
    assert test.items == [("2-1000-A-0.wav", 0), ("2-1001-A-0.wav", 1), ("2-10041-A-0.wav", 2)]
    assert test.root == str(root / "audio")
    train = esc50_split(root, fold=2, train=True)
    assert len(train) == 12 and not {p for p, _ in train.items} & {p for p, _ in test.items}
    assert all(not p.startswith("2-") for p, _ in train.items)
    esc10 = esc50_split(root, fold=1, train=False, esc10=True)
    assert esc10.classes == ["dog", "chainsaw"] and [lab for _, lab in esc10.items] == [0, 1]
    with pytest.raises(ValueError, match="fold must be one of"):
        esc50_split(root, fold=6, train=True)


def test_esc50_errors(tmp_path: Path) -> None:
    root = _esc50(tmp_path / "a", "6-1-A-0.wav,6,0,dog,False,1,A\n")
    with pytest.raises(SplitFormatError, match=r"esc50.csv:17: fold 6"):
        esc50_split(root, fold=1, train=True)
    root = _esc50(tmp_path / "b", "1-9-A-0.wav,1,0,cat,False,1,A\n")
    with pytest.raises(SplitFormatError, match=r"esc50.csv:17: target 0 is 'cat' here but 'dog' above"):
        esc50_split(root, fold=1, train=True)


# ------------------------------------------------------------------------------------- folders


def test_folder_split(tmp_path: Path) -> None:
    for rel in ("walk/b.mp4", "walk/a.mp4", "jump/x/c.mp4", "jump/notes.txt", ".hidden/d.mp4"):
        _write(tmp_path / rel, "x")
    split = folder_split(tmp_path)
    assert split.classes == ["jump", "walk"]
    assert split.items == [("jump/x/c.mp4", 0), ("walk/a.mp4", 1), ("walk/b.mp4", 1)]
    with pytest.raises(ValueError, match="no file with suffix"):
        folder_split(tmp_path / "jump" / "x")


# ------------------------------------------------------------------------------------- formats


def test_every_format_is_registered_and_an_unknown_one_is_refused() -> None:
    assert set(SPLIT_FORMATS) == {"synthetic", "ucf101", "hmdb51", "kinetics", "folder", "esc50", "vggsound",
                                  "audioset"}
    with pytest.raises(ConfigError, match=r"dataset.format='ucf-101' is invalid: .*Did you mean 'ucf101'\? "
                                          r"Valid split format names: audioset, esc50, folder, hmdb51, "
                                          r"kinetics, synthetic, ucf101, vggsound"):
        DatasetConfig(format="ucf-101")
    with pytest.raises(ConfigError, match="Valid split format names"):
        from_dict(DatasetConfig, {"format": "vggss"})


def test_load_split_reads_through_the_format(tmp_path: Path) -> None:
    for rel in ("train/walk/a.mp4", "train/jump/b.mp4", "test/walk/c.mp4"):
        _write(tmp_path / rel, "x")
    cfg = DatasetConfig(format="folder", root=str(tmp_path))
    assert load_split(cfg, "train").items == folder_split(tmp_path / "train").items
    test = load_split(cfg, "test")  # class ids follow the train folder's, not its own
    assert test.classes == ["jump", "walk"] and test.items == [("walk/c.mp4", 1)]
    esc = _esc50(tmp_path / "ESC-50")
    _write(esc / "audio" / "2-1000-A-0.wav", "x")  # load_split wants at least one file present
    got = load_split(DatasetConfig(format="esc50", root=str(esc), fold=2), "test")
    assert got.items == esc50_split(esc, fold=2, train=False).items


# ------------------------------------------------------------------------------------- manifest rows


def test_to_manifest_rows_with_and_without_probe(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "videos"
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    audio = (0.1 * np.sin(np.arange(4000) / 5)).astype(np.float32)
    write_av(root / "walk" / "a.mp4", frames, 10, audio, 16000)
    write_av(root / "jump" / "b.mp4", frames, 10, None)
    split = LabelledSplit(["jump", "walk"], [("walk/a.mp4", 1), ("jump/b.mp4", 0), ("walk/missing.mp4", 1)],
                          str(root), "toy")
    with caplog.at_level(logging.WARNING, logger="avlearn.data.splits"):
        rows = to_manifest_rows(split)
    assert "1 of 3 files missing" in caplog.text and "missing.mp4" in caplog.text
    assert [(Path(r.path).name, r.label, r.video_id) for r in rows] == [("a.mp4", "walk", "walk/a"),
                                                                        ("b.mp4", "jump", "jump/b")]
    assert rows[0].duration == 0.0 and rows[0].has_video

    probed = to_manifest_rows(split, probe=True, workers=1, keep_missing=True)
    by_name = {Path(r.path).name: r for r in probed}
    assert by_name["a.mp4"].duration == pytest.approx(1.0, abs=0.15) and by_name["a.mp4"].has_audio
    assert by_name["a.mp4"].label == "walk" and by_name["a.mp4"].video_id == "walk/a"
    assert not by_name["b.mp4"].has_audio and by_name["b.mp4"].label == "jump"
    assert by_name["missing.mp4"].status == "bad" and "missing" in by_name["missing.mp4"].reason


# ------------------------------------------------------------------------------------- label efficiency


def _items(counts: list[int]) -> list[tuple[str, int]]:
    return [(f"c{c}/v{i}.mp4", c) for c, n in enumerate(counts) for i in range(n)]


def test_subsample_per_class_deterministic_nested_per_class() -> None:
    items = _items([200, 50, 7, 1])
    subsets = {f: subsample_per_class(items, f, seed=3) for f in (0.01, 0.1, 0.5, 1.0)}
    for f, sub in subsets.items():
        counts = [sum(lab == c for _, lab in sub) for c in range(4)]
        assert counts == [max(1, round(f * n)) for n in (200, 50, 7, 1)], f  # per class, at least 1
        assert sub == [it for it in items if it in set(sub)]  # input order kept
        assert subsample_per_class(items, f, seed=3) == sub  # same seed, same subset
    assert set(subsets[0.01]) <= set(subsets[0.1]) <= set(subsets[0.5]) <= set(subsets[1.0]) == set(items)
    other = subsample_per_class(items, 0.1, seed=4)
    assert other != subsets[0.1] and len(other) == len(subsets[0.1])
    # a class's subset does not depend on the other classes
    alone = subsample_per_class([it for it in items if it[1] == 1], 0.1, seed=3)
    assert alone == [it for it in subsets[0.1] if it[1] == 1]


def test_subsample_rows_and_splits() -> None:
    rows = [VideoInfo(path=f"{c}/{i}.mp4", label=c) for c in ("a", "b") for i in range(10)]
    sub = subsample_per_class(rows, 0.2, seed=0)
    assert sorted(r.label for r in sub) == ["a", "a", "b", "b"]
    split = LabelledSplit(["a", "b"], _items([10, 10]), "/root", "toy")
    sub_split = subsample_per_class(split, 0.5, seed=0)
    assert isinstance(sub_split, LabelledSplit) and sub_split.root == "/root" and len(sub_split) == 10
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
            subsample_per_class(rows, bad, seed=0)
