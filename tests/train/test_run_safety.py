"""Run safety of the engine: nothing lost or mixed under --fresh, signals, kills, a second run in the
same run_dir, truncated checkpoints and changed configs.

Interrupted runs are real processes: a fork of this process running the command's ``main`` (no
second ~6 s import of torch) for kills, locks and signals (SIGTERM to its whole process group,
DataLoader worker included, as a job scheduler sends it), and two such forks joined in a gloo group
(the environment torchrun sets) for two processes that must agree on where they stop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import multiprocessing
import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest
import torch

from avlearn.train.checkpoint import CheckpointManager
from avlearn.train.interrupt import EXIT_INTERRUPTED
from avlearn.train.pretrain import main
from avlearn.train.rundir import RunDirBusyError, RunDirLock, config_changes, trim_metrics
from tests.torchrun import REPO, free_port
from tests.train.pretrain_helpers import SYNTH_CPU, fast_overrides, read_metrics

# Every run here, in this process or in a fork, uses one torch thread (the forks must, see ``_child``):
# exact resume is only bit-identical at one thread count, so the uninterrupted reference run uses the
# same count as the killed and resumed ones, however pytest was started.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _argv(manifest: Path, run_dir: Path, *args: str, **extra: object) -> list[str]:
    return ["--config", str(SYNTH_CPU), *args, *fast_overrides(manifest, run_dir, **extra)]


def _run(manifest: Path, run_dir: Path, *args: str, **extra: object) -> int:
    return main(_argv(manifest, run_dir, *args, **extra))


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if "train/loss" in r]


def _ckpt_steps(run_dir: Path) -> list[int]:
    return [s for s, _ in CheckpointManager(run_dir / "checkpoints").list()]


def _last_logged_step(run_dir: Path) -> int:
    """The newest ``train/loss`` step in metrics.jsonl, read while a run may be writing it."""
    path, last = run_dir / "metrics.jsonl", 0
    if not path.is_file():
        return 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "train/loss" in record:
            last = max(last, int(record["step"]))
    return last


def _child(argv: list[str], log_fd: int | None, session: bool, env: dict[str, str]) -> None:
    # A fork inherits libgomp's state but not its worker threads: the first parallel region the
    # child enters waits forever for them (seen under `make test`, where the test process had
    # used 2 OpenMP threads before forking). One thread keeps the child out of OpenMP regions.
    torch.set_num_threads(1)
    if env:  # e.g. RANK / WORLD_SIZE: this process is one of several, not this test process's fork
        from accelerate.state import AcceleratorState

        os.environ.update(env)
        AcceleratorState._reset_state(reset_partial_state=True)
    if session:  # its own process group, which its DataLoader workers join: a job to signal
        os.setsid()
    if log_fd is not None:  # the child's stderr and log lines go to the parent through a pipe
        sys.stderr = os.fdopen(log_fd, "w", buffering=1)
        logging.root.handlers = [logging.StreamHandler(sys.stderr)]
        logging.root.setLevel(logging.INFO)
    os._exit(main(argv))


def _fork_run(argv: list[str], log_fd: int | None = None, session: bool = False,
              env: dict[str, str] | None = None) -> BaseProcess:
    """``avlearn pretrain argv`` in a forked process (exit code: the command's; no new interpreter)."""
    proc = multiprocessing.get_context("fork").Process(target=_child,
                                                       args=(argv, log_fd, session, env or {}))
    proc.start()
    return proc


def _wait_for_step(run_dir: Path, step: int, alive: Any, timeout: float = 120.0) -> int:
    """Poll metrics.jsonl until ``step`` is logged or ``alive()`` turns false; returns the last step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = _last_logged_step(run_dir)
        if last >= step or not alive():
            return last
        time.sleep(0.01)
    raise AssertionError(f"step {step} not reached in {timeout} s")


# ------------------------------------------------------------------------------------- --fresh


def test_fresh_moves_the_earlier_run_aside(synth_train: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    common = {"epochs": 3, "train.ckpt_every_steps": 2}
    assert _run(synth_train, run, max_steps=6, **common) == 0
    assert _ckpt_steps(run) == [4, 6]
    (run / "notes.txt").write_text("not the run's")

    assert _run(synth_train, run, "--fresh", max_steps=3, **common) == 0
    assert _ckpt_steps(run) == [2, 3]  # only the new run's, none of the old run's
    assert "moved to" in caplog.text
    (previous,) = (run / "previous").iterdir()
    assert _ckpt_steps(previous) == [4, 6] and _steps(previous) == list(range(1, 7))
    assert (previous / "encoders.safetensors").is_file() and (previous / "config.yaml").is_file()
    assert (run / "notes.txt").read_text() == "not the run's"  # only a run's own files move
    assert [r["event"] for r in read_metrics(run) if r.get("event") in ("start", "resume")] == ["start"]
    assert _steps(run) == [1, 2, 3]

    assert _run(synth_train, run, max_steps=4, **common) == 0  # a plain rerun continues the new run
    resumed = [r for r in read_metrics(run) if r.get("event") == "resume"]
    assert len(resumed) == 1 and resumed[0]["step"] == 3
    assert _steps(run) == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------- checkpoints


def test_truncated_newest_checkpoint_falls_back(synth_train: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    common = {"epochs": 3, "train.ckpt_every_steps": 2}
    assert _run(synth_train, run, max_steps=4, **common) == 0
    newest = run / "checkpoints" / "step_00000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    assert _run(synth_train, run, max_steps=5, **common) == 0
    assert "step_00000004.pt" in caplog.text  # the warning names the bad file
    resumed = next(r for r in read_metrics(run) if r.get("event") == "resume")
    assert resumed["step"] == 2 and resumed["checkpoint"].endswith("step_00000002.pt")
    assert (run / "checkpoints" / "step_00000004.pt.corrupt").is_file()
    assert _ckpt_steps(run) == [4, 5] and _steps(run) == [1, 2, 3, 4, 5]


def test_checkpoint_is_synced_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    CheckpointManager(tmp_path).save({"step": 1}, 1)
    assert synced == ["file", "dir"]


# ------------------------------------------------------------------------------------- config


def test_resume_refuses_a_config_change_it_cannot_honour(
    synth_train: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert _run(synth_train, run, epochs=3, max_steps=2) == 0
    capsys.readouterr()

    assert _run(synth_train, run, epochs=3, max_steps=3, **{"model.embed_dim": 16}) == 2
    err = capsys.readouterr().err
    assert "model.embed_dim: 32 -> 16" in err and "--fresh" in err and "Traceback" not in err

    assert _run(synth_train, run, epochs=3, max_steps=3, **{"objective.name": "infonce"}) == 2
    err = capsys.readouterr().err
    assert "objective.name: 'avid' -> 'infonce'" in err and "objective.num_negatives" in err
    assert "name: avid" in (run / "config.yaml").read_text()  # nothing was rewritten

    # longer, logged differently, checkpointed differently: resumable
    assert _run(synth_train, run, epochs=4, max_steps=3, **{"train.log_every": 2,
                                                             "train.ckpt_every_steps": 7}) == 0
    assert [r["step"] for r in read_metrics(run) if r.get("event") == "resume"] == [2]
    assert _ckpt_steps(run)[-1] == 3


def test_config_changes_lists_nested_keys() -> None:
    old = {"epochs": 3, "model": {"embed_dim": 32, "head": "mlp"}, "crop": [0.4, 1.0]}
    new = {"epochs": 4, "model": {"embed_dim": 32}, "crop": (0.5, 1.0)}
    assert config_changes(old, new) == [("crop", [0.4, 1.0], [0.5, 1.0]), ("epochs", 3, 4),
                                        ("model.head", "mlp", None)]


def test_trim_metrics_drops_later_records_and_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [{"event": "start", "step": 0}, {"step": 1, "x": 1}, {"step": 2, "x": 2}, {"step": 3, "x": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "x"')
    assert trim_metrics(path, 2) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]


# ------------------------------------------------------------------------------------- lock


def test_second_run_in_the_same_dir_is_refused_and_a_kill_leaves_no_stale_lock(
    synth_train: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    first = _fork_run(_argv(synth_train, run, epochs=100, **{"train.ckpt_every_steps": 1}))
    try:
        assert _wait_for_step(run, 1, first.is_alive) >= 1
        while not _ckpt_steps(run) and first.is_alive():  # its first checkpoint, to resume from
            time.sleep(0.01)
        assert first.is_alive()
        t0 = time.monotonic()
        assert _run(synth_train, run, epochs=1) == 2  # this process is the second run
        refused_in = time.monotonic() - t0
        err = capsys.readouterr().err
        assert f"run_dir {run} is in use by process {first.pid} on host {socket.gethostname()}" in err
        assert refused_in < 10, refused_in
    finally:
        os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
        first.join()
    assert first.exitcode == -signal.SIGKILL
    assert _run(synth_train, run, epochs=100, max_steps=_ckpt_steps(run)[-1] + 1) == 0  # not stale


def test_without_lock_support_a_live_run_on_this_host_still_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fh: object, flags: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    holder = {"host": socket.gethostname(), "started": "earlier", "command": "avlearn pretrain"}
    (tmp_path / "run.lock").write_text(json.dumps({**holder, "pid": os.getppid()}))  # alive
    with pytest.raises(RunDirBusyError, match=f"in use by process {os.getppid()} on host"):
        RunDirLock(tmp_path).acquire()
    assert "does not support locks" in caplog.text
    (tmp_path / "run.lock").write_text(json.dumps({**holder, "pid": _exited_pid()}))
    lock = RunDirLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert f"{EXIT_INTERRUPTED}   stopped by SIGINT/SIGTERM" in out and "run_dir/previous/" in out


# ------------------------------------------------------------------------------------- signals


def test_sigterm_to_the_job_finishes_the_step_and_checkpoints(synth_train: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    read_fd, write_fd = os.pipe()
    # a DataLoader worker too: a job's SIGTERM reaches every process of it, as under SLURM
    argv = _argv(synth_train, run, epochs=100, **{"train.ckpt_every_steps": 1000, "data.num_workers": 1})
    child = _fork_run(argv, write_fd, session=True)
    os.close(write_fd)
    try:
        signalled_after = _wait_for_step(run, 2, child.is_alive)
        os.killpg(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
        child.join(120)
    finally:
        with contextlib.suppress(ProcessLookupError):  # what is left of the job: its worker
            os.killpg(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
    with os.fdopen(read_fd) as log:
        err = log.read()
    assert child.exitcode == EXIT_INTERRUPTED, err[-3000:]
    match = re.search(r"stopped by SIGTERM at step (\d+) \(epoch \d+\); checkpoint (\S+)\.", err)
    assert match is not None and "Traceback" not in err, err[-3000:]
    step = int(match.group(1))
    assert step >= signalled_after >= 2
    assert _ckpt_steps(run) == [step] and Path(match.group(2)).name == f"step_{step:08d}.pt"
    assert _steps(run)[-1] == step  # no step after the checkpoint
    event = next(r for r in read_metrics(run) if r.get("event") == "interrupted")
    assert event["step"] == step and event["signal"] == "SIGTERM"


def test_a_second_signal_exits_at_once(synth_train: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    read_fd, write_fd = os.pipe()
    child = _fork_run(_argv(synth_train, run, epochs=100, **{"train.ckpt_every_steps": 1000}), write_fd)
    os.close(write_fd)
    try:
        _wait_for_step(run, 1, child.is_alive)
        # both arrive before the run can act on the first (a stopped process keeps them pending;
        # Python runs the handlers in signal-number order: SIGINT, then SIGTERM)
        os.kill(child.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        os.kill(child.pid, signal.SIGINT)  # type: ignore[arg-type]
        os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
        os.kill(child.pid, signal.SIGCONT)  # type: ignore[arg-type]
        child.join(60)
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            child.join()
    with os.fdopen(read_fd) as log:
        err = log.read()
    assert child.exitcode == 128 + signal.SIGTERM, (child.exitcode, err[-2000:])
    assert "SIGTERM after SIGINT: exiting at once (exit code 143)" in err
    assert _ckpt_steps(run) == []  # it did not wait for the step's end and its checkpoint


# A rank of the two-process test: a fresh interpreter running the command as torchrun would start it.
_RANK_SCRIPT = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
                "from avlearn.train.pretrain import main; sys.exit(main(sys.argv[1:]))")


def test_two_processes_agree_on_the_stop_step(synth_train: Path, tmp_path: Path) -> None:
    """Two gloo processes (set up as torchrun would); only rank 1 gets SIGTERM.

    They are new interpreters, not forks: a fork of a test process that has run 2-thread OpenMP
    regions waits forever at a libgomp barrier inside MKL (seen under plain ``pytest``)."""
    run, port = tmp_path / "ddp", str(free_port())
    argv = _argv(synth_train, run, epochs=100, **{"data.batch_size": 4, "train.ckpt_every_steps": 1000})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    paths = [tmp_path / f"rank{r}.log" for r in range(2)]  # files, not pipes: a full pipe would stall a rank
    with contextlib.ExitStack() as files:
        ranks = [subprocess.Popen([sys.executable, "-c", _RANK_SCRIPT, *argv], cwd=REPO,
                                  env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                                  stdout=subprocess.DEVNULL, stderr=files.enter_context(paths[r].open("w")))
                 for r in range(2)]
        try:
            _wait_for_step(run, 1, lambda: all(p.poll() is None for p in ranks), timeout=240.0)
            if all(p.poll() is None for p in ranks):  # else the exit codes below tell, with the logs
                ranks[1].send_signal(signal.SIGTERM)
            for proc in ranks:
                proc.wait(120)
        finally:
            for proc in ranks:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    logs = [path.read_text() for path in paths]
    assert [p.returncode for p in ranks] == [EXIT_INTERRUPTED] * 2, [log[-2000:] for log in logs]
    causes = ["a signal to another process", "SIGTERM"]
    steps = []
    for cause, log in zip(causes, logs, strict=True):
        found = re.search(rf"stopped by {cause} at step (\d+) .*\(exit code {EXIT_INTERRUPTED}\)", log)
        assert found is not None, log[-2000:]
        steps.append(int(found.group(1)))
    assert steps[0] == steps[1], steps
    step = steps[0]
    event = next(r for r in read_metrics(run) if r.get("event") == "interrupted")
    assert event["step"] == step and event["signal"] == causes[0]
    state = CheckpointManager.load(run / "checkpoints" / f"step_{step:08d}.pt")
    assert state["step"] == step and len(state["rng"]) == 2  # both processes' part of it
    assert _steps(run)[-1] == step


# ------------------------------------------------------------------------------------- fault injection


def test_killed_at_random_steps_and_resumed_matches_uninterrupted(synth_train: Path, tmp_path: Path) -> None:
    """``kill -9`` at random steps, three times, each followed by a resume, then run to the end."""
    # A fixed default draw, so that a run of the suite is repeatable; set AVLEARN_FAULT_SEED to explore.
    seed = int(os.environ.get("AVLEARN_FAULT_SEED", "20261207"))
    rng = random.Random(seed)
    common = {"epochs": 2, "train.ckpt_every_steps": 2}  # 4 steps per epoch: 8 steps
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run(synth_train, straight, **common) == 0
    total = _steps(straight)[-1]

    kills = []
    for _ in range(3):
        last = _last_logged_step(killed)
        if last >= total - 1:
            break
        at = rng.randint(last + 1, total - 1)
        child = _fork_run(_argv(synth_train, killed, **common))
        _wait_for_step(killed, at, child.is_alive)
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
        kills.append((at, _last_logged_step(killed), child.exitcode))
    assert _run(synth_train, killed, **common) == 0
    note = f"AVLEARN_FAULT_SEED={seed}, kills (asked, reached, exit): {kills}"

    assert _steps(killed) == _steps(straight), note  # each step logged once: later records trimmed
    loss_a = [r["train/loss"] for r in read_metrics(straight) if "train/loss" in r]
    loss_b = [r["train/loss"] for r in read_metrics(killed) if "train/loss" in r]
    assert loss_b == pytest.approx(loss_a, rel=1e-5), note
    a = CheckpointManager.load(CheckpointManager(straight / "checkpoints").latest())  # type: ignore[arg-type]
    b = CheckpointManager.load(CheckpointManager(killed / "checkpoints").latest())  # type: ignore[arg-type]
    assert a["step"] == b["step"] == total
    for part in ("model", "objective"):
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=1e-5, atol=1e-6,
                                       msg=f"{part}.{key} differs ({note})")
