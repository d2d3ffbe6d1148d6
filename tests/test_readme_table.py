"""The benchmark table of ``docs/benchmarks.md`` and the README's demo paragraph are generated from
``benchmarks/results/*.json`` by each benchmark's headline function, and kept current."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import readme_table, record_demo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _block(text: str, start: str = readme_table.START, end: str = readme_table.END) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def _targets(tmp_path: Path) -> list[str]:
    """Copies of README.md and docs/benchmarks.md; the arguments that point the command at them."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copy(ROOT / "docs" / "benchmarks.md", tmp_path / "benchmarks.md")
    return ["--readme", str(tmp_path / "README.md"), "--docs", str(tmp_path / "benchmarks.md")]


def test_docs_table_and_demo_paragraph_are_current() -> None:
    assert _block((ROOT / "docs" / "benchmarks.md").read_text()) == readme_table.render(), (
        "docs/benchmarks.md's benchmark table is stale: run python -m benchmarks.readme_table --write"
    )
    assert readme_table.main(["--check"]) == 0
    assert readme_table.START not in (ROOT / "README.md").read_text()  # the table lives in the docs


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_results_file_gets_its_benchmarks_headline(path: Path) -> None:
    record = json.loads(path.read_text())
    module = readme_table.writer(record)
    assert module is not None, f"{path.name}: no benchmark module claims it"
    text = module.headline(record)  # raises if the headline no longer reads this file's shape
    assert isinstance(text, str) and 0 < len(text.split()) <= 45, text  # a headline, not a report
    rows = readme_table.rows_for(path)
    assert len(rows) == 1 and f"`{path.name}`" in rows[0] and " ".join(text.split()) in rows[0]


def test_one_short_row_per_results_file() -> None:
    lines = readme_table.render().splitlines()
    assert lines[:2] == readme_table.HEADER.splitlines()
    assert len(lines) == 2 + len(list(RESULTS.glob("*.json")))
    assert all(line.count(" | ") == 3 for line in lines[2:])
    # old commands are shown as they run today
    assert "python benchmarks/" not in "\n".join(lines)


def test_unknown_and_broken_json_get_generic_rows(tmp_path: Path) -> None:
    (tmp_path / "new_bench.json").write_text(json.dumps(
        {"command": "python -m benchmarks.new_bench | tee log",
         "machine": {"processor": "arm64", "cpu_count": 8},
         "speed": 12.345, "ok": True, "nested": {"a": [1, 2]}}
    ))
    (tmp_path / "list_shaped.json").write_text("[1, 2, 3]")
    (tmp_path / "broken.json").write_text("{not json")
    # a known benchmark whose record changed shape falls back to the generic row instead of failing
    (tmp_path / "scaling_cpu.json").write_text(json.dumps({"command": "python -m benchmarks.scaling_cpu",
                                                           "speedup": 1.5}))
    table = readme_table.render(tmp_path)
    lines = table.splitlines()
    assert lines[:2] == readme_table.HEADER.splitlines()
    assert len(lines) == 2 + 4
    new = next(line for line in lines if "new_bench" in line)
    assert "speed 12.3" in new and "arm64, 8 cores" in new
    assert "`python -m benchmarks.new_bench \\| tee log`" in new
    assert all(line.count(" | ") == 3 for line in lines[2:])  # a | inside a cell is escaped
    assert "unreadable" in next(line for line in lines if "broken" in line)
    assert "speedup 1.5" in next(line for line in lines if "scaling_cpu" in line)


def test_check_fails_on_a_modified_copy_and_write_fixes_it(tmp_path: Path) -> None:
    args = _targets(tmp_path)
    docs = tmp_path / "benchmarks.md"
    text = docs.read_text()
    docs.write_text(text.replace(readme_table.END, "| stale | row | - | - |\n" + readme_table.END))
    assert readme_table.main(["--check", *args]) == 1
    assert readme_table.main(["--write", *args]) == 0
    assert readme_table.main(["--check", *args]) == 0
    assert docs.read_text() == text
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text()


def test_missing_markers_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _targets(tmp_path)
    (tmp_path / "benchmarks.md").write_text("# no table here\n")
    assert readme_table.main(["--check", *args]) == 2
    assert "benchmarks:start" in capsys.readouterr().err
    args = _targets(tmp_path)
    (tmp_path / "README.md").write_text("# no demo paragraph here\n")
    assert readme_table.main(["--check", *args]) == 2
    assert "demo:start" in capsys.readouterr().err


def test_readme_demo_paragraph_is_generated_from_the_demo_results(tmp_path: Path) -> None:
    demo = json.loads((RESULTS / "demo.json").read_text())
    text = (ROOT / "README.md").read_text()
    paragraph = _block(text, readme_table.DEMO_START, readme_table.DEMO_END)
    assert paragraph == record_demo.demo_paragraph(demo)
    r1 = demo["pretrain"]["retrieval_after"]["v2a_r1"]
    assert f"{100 * r1:.1f} % after pretraining" in paragraph

    # a changed figure makes --check fail on the README until --write renews the paragraph
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    demo["pretrain"]["retrieval_after"]["v2a_r1"] = 0.987
    (results / "demo.json").write_text(json.dumps(demo))
    args = [*_targets(tmp_path), "--results", str(results)]
    assert readme_table.main(["--check", *args]) == 1
    assert readme_table.main(["--write", *args]) == 0
    assert "98.7 % after pretraining" in (tmp_path / "README.md").read_text()
    assert readme_table.main(["--check", *args]) == 0


def test_record_demo_keeps_no_absolute_paths(tmp_path: Path) -> None:
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
