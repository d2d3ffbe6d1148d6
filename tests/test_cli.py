from __future__ import annotations

import subprocess
import sys

import pytest

from avlearn.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "prepare index" in out and "synth" in out and "demo" in out


def test_unknown_command_fails_with_usage(capsys):
    assert main(["pretrian"]) == 2
    assert "unknown command 'pretrian'" in capsys.readouterr().err


def test_group_without_subcommand(capsys):
    assert main(["prepare"]) == 2
    assert "index" in capsys.readouterr().err


def test_console_module_runs():
    proc = subprocess.run([sys.executable, "-m", "avlearn", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip()


def test_group_help_lists_its_subcommands_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "prepare index" in out and "prepare reencode" in out and "pretrain" not in out
