from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avlearn.cli import main

ROOT = Path(__file__).resolve().parents[1]


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


def test_command_leaves_the_process_group_before_exit(tmp_path) -> None:
    """A command run under torchrun ends with no live process group: gloo threads left to
    interpreter shutdown made both ranks of a finished run abort (SIGABRT) now and then."""
    from tests.torchrun import free_port

    script = tmp_path / "rank.py"
    script.write_text(
        "import os, sys\n"
        "import torch.distributed as dist\n"
        "from avlearn.cli import main\n"
        f"os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='{free_port()}', RANK='0', WORLD_SIZE='1')\n"
        "dist.init_process_group('gloo')\n"
        "try:\n"
        "    main(['pretrain', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('initialized after the command:', dist.is_initialized())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "initialized after the command: False" in proc.stdout
