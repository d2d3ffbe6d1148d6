"""The README's benchmark table is generated from ``benchmarks/results/*.json`` and kept current."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_table = _load()


def _block(text: str) -> str:
    return text.split(readme_table.START, 1)[1].split(readme_table.END, 1)[0].strip("\n")


def test_readme_block_is_current() -> None:
    rendered = readme_table.render()
    assert _block((ROOT / "README.md").read_text()) == rendered, (
        "README.md's benchmark table is stale: run python benchmarks/readme_table.py --write"
    )
    assert readme_table.main(["--check"]) == 0


def test_every_results_file_has_a_row() -> None:
    table = readme_table.render()
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert path.stem in table


def test_unknown_and_broken_json_get_generic_rows(tmp_path: Path) -> None:
    (tmp_path / "new_bench.json").write_text(json.dumps(
        {"command": "python benchmarks/new_bench.py | tee log",
         "machine": {"processor": "arm64", "cpu_count": 8},
         "speed": 12.345, "ok": True, "nested": {"a": [1, 2]}}
    ))
    (tmp_path / "list_shaped.json").write_text("[1, 2, 3]")
    (tmp_path / "broken.json").write_text("{not json")
    # a known name whose shape changed falls back to the generic row instead of failing
    (tmp_path / "scaling_cpu.json").write_text(json.dumps({"command": "x", "speedup": 1.5}))
    table = readme_table.render(tmp_path)
    lines = table.splitlines()
    assert lines[:2] == readme_table.HEADER.splitlines()
    assert len(lines) == 2 + 4
    new = next(line for line in lines if "new_bench" in line)
    assert "speed 12.3" in new and "arm64, 8 cores" in new
    assert "`python benchmarks/new_bench.py \\| tee log`" in new
    assert all(line.count(" | ") == 3 for line in lines[2:])  # a | inside a cell is escaped
    assert "unreadable" in next(line for line in lines if "broken" in line)
    assert "speedup 1.5" in next(line for line in lines if "scaling_cpu" in line)


def test_check_fails_on_a_modified_copy_and_write_fixes_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    text = readme.read_text()
    readme.write_text(text.replace(readme_table.END, "| stale | row | - | - |\n" + readme_table.END))
    assert readme_table.main(["--check", "--readme", str(readme)]) == 1
    assert readme_table.main(["--write", "--readme", str(readme)]) == 0
    assert readme_table.main(["--check", "--readme", str(readme)]) == 0
    assert readme.read_text() == text


def test_missing_markers_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    assert readme_table.main(["--check", "--readme", str(readme)]) == 2
    assert "benchmarks:start" in capsys.readouterr().err


def test_readme_demo_paragraph_is_generated_from_the_demo_results(tmp_path: Path) -> None:
    demo = json.loads((ROOT / "benchmarks" / "results" / "demo.json").read_text())
    text = (ROOT / "README.md").read_text()
    paragraph = text.split(readme_table.DEMO_START, 1)[1].split(readme_table.DEMO_END, 1)[0].strip("\n")
    assert paragraph == readme_table.demo_paragraph(demo)
    r1 = demo["pretrain"]["retrieval_after"]["v2a_r1"]
    assert f"{100 * r1:.1f} % after pretraining" in paragraph

    # a changed figure makes --check fail on the README until --write renews the paragraph
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    demo["pretrain"]["retrieval_after"]["v2a_r1"] = 0.987
    (results / "demo.json").write_text(json.dumps(demo))
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    args = ["--readme", str(readme), "--results", str(results)]
    assert readme_table.main(["--check", *args]) == 1
    assert readme_table.main(["--write", *args]) == 0
    assert "98.7 % after pretraining" in readme.read_text()
    assert readme_table.main(["--check", *args]) == 0


def test_record_demo_keeps_no_absolute_paths(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("record_demo", ROOT / "benchmarks" / "record_demo.py")
    assert spec is not None and spec.loader is not None
    record_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record_demo)
    run = tmp_path / "demo"
    run.mkdir()
    config = str(ROOT / "demos" / "configs" / "x.yaml")
    summary = {"command": f"avlearn demo --out {run}", "downstream": {}, "localization": {},
               "report": str(run / "report.md"),
               "pretrain": {"config": config, "plots": [str(run / "a.png")]}}
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "demo.json"
    assert record_demo.main([str(run / "summary.json"), "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["report"] == "<demo out>/report.md" and rec["pretrain"]["plots"] == ["<demo out>/a.png"]
    assert rec["pretrain"]["config"] == "demos/configs/x.yaml"
    assert rec["command"] == "python -m avlearn demo --out <demo out>"
    (run / "partial.json").write_text(json.dumps({"pretrain": {}}))
    assert record_demo.main([str(run / "partial.json"), "--out", str(out)]) == 2
