"""``avlearn serve``: explore where a model hears the sound, in the browser.

Usage::

    avlearn serve --checkpoint RUN [--videos DIR] [--host 127.0.0.1] [--port 7860]

Starts a local web page (Gradio) and prints its address. Pick a video of ``--videos`` or upload
one, move the time slider, choose the sound to localize (the video's own, another video's,
silence, or an uploaded WAV/MP3) and the page shows the map over that frame, SLAVC's confidence
that the sound is visible, and the peak (the pointing game's guess); "Render MP4" gives the
overlay video with that sound to download. The maps are ``avlearn localize``'s, computed by the
same code on the same windows (:mod:`avlearn.serve.session`).

Bound to 127.0.0.1 unless ``--host`` says otherwise; uploads are limited to
``--max-upload-mb`` and read first in a worker process; the page can read only the videos of
``--videos`` and its own temporary folder. Nothing reaches the internet: analytics are off,
there are no share links, no server-side rendering and no web fonts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avlearn.data.decode import DecodeError
from avlearn.localization.inputs import CHECKPOINT_HELP, LOCALIZER_HELP, load_for_localization
from avlearn.models.checkpoint import CheckpointError
from avlearn.serve.session import Explorer, FrameView, Sound, SoundKind

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["SOUNDS", "Page", "build", "main"]

SOUNDS: dict[str, SoundKind] = {
    "the video's own": "own",
    "another video's": "video",
    "silence": "silence",
    "an uploaded WAV / MP3": "upload",
}
_SOUND_FILES = [".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac"]
_CSS = "#heatmap img { width: 100%; height: 100%; object-fit: contain; image-rendering: auto; }"
_VIDEO_FILES = [".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v"]


@contextlib.contextmanager
def _as_page_errors() -> Iterator[None]:
    """The CLI's error messages, shown in the page (``gr.Error``) instead of a traceback."""
    import gradio as gr

    try:
        yield
    except (DecodeError, PermissionError, ValueError) as err:
        raise gr.Error(str(err), title="avlearn") from None


class Page:
    """The page's callbacks: plain functions of the widgets' values, tested without a browser.

    A video is named by its path in ``--videos`` or, once uploaded, by its path in the server's
    temporary folder; :meth:`Explorer.resolve` refuses anything else.
    """

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer

    def pick(self, video: str | None) -> tuple[str | None, dict[str, Any]]:
        """A video was chosen: ``(its name, the time slider's new range)``."""
        if not video:
            return None, {"maximum": 1.0, "value": 0.0, "__type__": "update"}
        with _as_page_errors():
            duration = self.explorer.duration(self.explorer.resolve(video))
        return video, {"maximum": round(duration, 3), "value": 0.0, "__type__": "update"}

    def upload_video(self, path: str | None) -> tuple[str | None, dict[str, Any]]:
        """A video was uploaded: checked in the worker, then picked."""
        if not path:
            return None, {"__type__": "update"}
        with _as_page_errors():
            checked = self.explorer.check_upload(path, need_video=True)
        return self.pick(str(checked))

    def sound(self, choice: str, other: str | None, upload: str | None) -> Sound:
        """The widgets' choice of sound as a :class:`Sound` (uploads checked in the worker)."""
        kind = SOUNDS.get(choice)
        if kind is None:
            raise ValueError(f"unknown sound choice {choice!r}; valid: {', '.join(SOUNDS)}")
        if kind == "video":
            if not other:
                raise ValueError("choose the other video whose sound to localize")
            return Sound("video", other)
        if kind == "upload":
            if not upload:
                raise ValueError("upload a WAV or MP3 file to localize its sound")
            return Sound("upload", str(self.explorer.check_upload(upload, need_video=False)))
        return Sound(kind)

    def show(self, video: str | None, t: float, choice: str, other: str | None,
             upload: str | None) -> tuple[Any, str]:
        """``(image (H, W, 3) uint8 or None, the numbers as Markdown)`` of the frame at ``t`` s."""
        if not video:
            return None, "Pick a video of the folder or upload one."
        with _as_page_errors():
            view = self.explorer.frame(video, float(t or 0.0), self.sound(choice, other, upload))
        return view.image, describe(view, choice, other)

    def render(self, video: str | None, choice: str, other: str | None, upload: str | None) -> str:
        """Path of the overlay MP4 (with the sound) to download."""
        if not video:
            raise _page_error("pick a video first")
        with _as_page_errors():
            return str(self.explorer.render(video, self.sound(choice, other, upload)))


def _page_error(message: str) -> Exception:
    import gradio as gr

    return gr.Error(message, title="avlearn")


def describe(view: FrameView, choice: str, other: str | None) -> str:
    """The numbers under the picture (Markdown); the peak is ``(x, y)`` in the frame's pixels."""
    height, width = view.image.shape[:2]
    whose = f"another video ({other})" if SOUNDS.get(choice) == "video" else choice
    peak = ("the map is flat: no peak" if view.peak is None else
            f"x = <span id='peak-x'>{view.peak[0]}</span>, y = <span id='peak-y'>{view.peak[1]}</span> "
            f"of {width} x {height} px")
    return (f"**Peak** (where the map is highest): {peak}  \n"
            f"**Confidence** that the sound is visible: <span id='confidence'>{view.confidence:.3f}</span> "
            "(mean of the map's top quarter, cosine; SLAVC)  \n"
            f"Frame at {view.time:.2f} s, from the model window {view.window[0]:.2f}-{view.window[1]:.2f} s; "
            f"sound: {whose}")


def build(page: Page, title: str) -> gr.Blocks:
    """The Gradio page (not launched)."""
    import gradio as gr

    names = page.explorer.video_names()
    with gr.Blocks(title="avlearn serve", analytics_enabled=False) as blocks:
        gr.Markdown(f"## Where is the sound?\n{title}")
        video = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                folder = gr.Dropdown(names, value=None, label="Video from the folder", elem_id="video")
                uploaded = gr.File(label="... or upload a video", file_types=_VIDEO_FILES, type="filepath",
                                   elem_id="video-upload", height=110)
                time = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Time (s)", elem_id="time")
                choice = gr.Radio(list(SOUNDS), value="the video's own", label="Sound to localize",
                                  elem_id="sound")
                other = gr.Dropdown(names, value=None, label="Other video (its sound)", elem_id="other")
                sound_file = gr.File(label="Sound file (WAV / MP3)", file_types=_SOUND_FILES, type="filepath",
                                     elem_id="sound-upload", height=110)
                render = gr.Button("Render MP4 with the sound", elem_id="render")
                download = gr.File(label="Overlay MP4", interactive=False, elem_id="download")
            with gr.Column(scale=2):
                image = gr.Image(label="Map over the frame (ring: the peak)", type="numpy", interactive=False,
                                 elem_id="heatmap", format="png", height=420)
                numbers = gr.Markdown("Pick a video of the folder or upload one.", elem_id="numbers")
        inputs = [video, time, choice, other, sound_file]
        outputs = [image, numbers]
        folder.change(page.pick, [folder], [video, time]).then(page.show, inputs, outputs)
        uploaded.upload(page.upload_video, [uploaded], [video, time]).then(page.show, inputs, outputs)
        for widget in (time, choice, other, sound_file):  # scrubbing: only the latest position runs
            widget.change(page.show, inputs, outputs, trigger_mode="always_last")
        render.click(page.render, [video, choice, other, sound_file], [download])
    built: gr.Blocks = blocks
    return built


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avlearn serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--localizer", default="auto", help=LOCALIZER_HELP)
    p.add_argument("--videos", type=Path, help="folder of videos to offer (subfolders included)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (0: any free one)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted")
    p.add_argument("--max-seconds", type=float, default=60.0, help="longest stretch a rendered MP4 covers")
    return p


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def launch(page: Page, title: str, host: str, port: int, max_upload_mb: float) -> tuple[gr.Blocks, str]:
    """Start the page in a background thread; returns the Blocks and the page's address."""
    import gradio as gr

    blocks = build(page, title)
    blocks.queue(default_concurrency_limit=1)  # one model: one computation at a time
    videos = page.explorer.videos
    _, url, _ = blocks.launch(
        server_name=host, server_port=port or _free_port(host), share=False, prevent_thread_lock=True,
        quiet=True, show_error=True, ssr_mode=False, mcp_server=False, enable_monitoring=False,
        allowed_paths=[str(videos)] if videos is not None else [],
        max_file_size=int(max_upload_mb * 1024 * 1024),  # bytes: Gradio reads no fractional "0.5mb"
        theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
        footer_links=[], css=_CSS,
    )
    return blocks, url


def _offline_gradio(temp: Path) -> None:
    """Before gradio is imported: no analytics, no version check, uploads in our temporary folder."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(temp)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """``avlearn serve``; returns the exit code (runs until interrupted)."""
    args = _parser().parse_args(argv)
    if importlib.util.find_spec("gradio") is None:
        print("avlearn serve: the page needs Gradio: pip install 'avlearn[serve]' (or -e '.[serve]')",
              file=sys.stderr)
        return 2
    if args.videos is not None and not args.videos.is_dir():
        print(f"avlearn serve: --videos {args.videos} is not a folder; pass a folder of videos",
              file=sys.stderr)
        return 2
    try:
        loaded = load_for_localization(args.checkpoint, args.localizer)
    except CheckpointError as err:
        print(f"avlearn serve: {err}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="avlearn-serve-") as tmp:
        _offline_gradio(Path(tmp))
        explorer = Explorer(loaded, args.videos, Path(tmp), args.max_seconds)
        title = f"Model: `{args.checkpoint}` ({'learned' if loaded[2] else 'post hoc'} localizer)"
        blocks, url = launch(Page(explorer), title, args.host, args.port, args.max_upload_mb)
        print(f"avlearn serve: open {url} (Ctrl+C stops it)", flush=True)
        signal.signal(signal.SIGTERM, _stop)  # as Ctrl+C: the temporary folder is removed
        try:
            blocks.block_thread()
        finally:
            blocks.close()
            explorer.close()
    return 0
