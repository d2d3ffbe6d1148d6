"""The page's callbacks without a browser, and ``avlearn serve`` itself up to a served page."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from avlearn.cli import main as avlearn_main
from avlearn.serve.app import SOUNDS, Page, describe
from avlearn.serve.session import Explorer
from tests.serve.conftest import BLUE, RED, inside

gr = pytest.importorskip("gradio", reason="the serve extra is not installed: pip install -e '.[dev]'")

OWN, OTHER, SILENCE, UPLOAD = list(SOUNDS)


def _peak(markdown: str) -> tuple[int, int]:
    found = re.search(r"x = (?:<[^>]+>)?(\d+)(?:<[^>]+>)?, y = (?:<[^>]+>)?(\d+)", markdown)
    assert found, markdown
    return int(found[1]), int(found[2])


def test_pick_then_show_follows_the_sound(explorer: Explorer) -> None:
    page = Page(explorer)
    video, slider = page.pick("low.mp4")
    assert video == "low.mp4" and slider["maximum"] == pytest.approx(2.0, abs=0.06)
    own_image, own_text = page.show(video, 1.0, OWN, None, None)
    other_image, other_text = page.show(video, 1.0, OTHER, "high.mp4", None)
    assert inside(RED, _peak(own_text)) and inside(BLUE, _peak(other_text))
    assert (own_image != other_image).any()
    assert "no peak" in page.show(video, 1.0, SILENCE, None, None)[1]


@pytest.mark.parametrize(("video", "choice", "other", "message"), [
    ("mute.mp4", OWN, None, "has no audio track; choose another sound"),
    ("low.mp4", OTHER, None, "choose the other video"),
    ("low.mp4", UPLOAD, None, "upload a WAV or MP3"),
    ("../outside.mp4", OWN, None, "not a video of the served folder"),
])
def test_errors_are_shown_in_the_page(explorer: Explorer, video: str, choice: str, other: str | None,
                                      message: str) -> None:
    with pytest.raises(gr.Error, match=re.escape(message)):
        Page(explorer).show(video, 0.5, choice, other, None)


def test_an_uploaded_file_that_is_not_media_is_a_page_error(explorer: Explorer) -> None:
    junk = explorer.temp / "clip.mp4"
    junk.write_text("<html>not a video</html>")
    with pytest.raises(gr.Error, match="not a readable media file"):
        Page(explorer).upload_video(str(junk))


def test_render_gives_a_file_in_the_servers_temp(explorer: Explorer) -> None:
    path = Path(Page(explorer).render("low.mp4", SILENCE, None, None))
    assert path.is_file() and path.is_relative_to(explorer.temp)


def test_describe_names_the_window_and_the_sound(explorer: Explorer) -> None:
    sound = Page(explorer).sound(OTHER, "high.mp4", None)
    assert sound.name == "high.mp4"
    text = describe(explorer.frame("low.mp4", 0.3, sound), OTHER, "high.mp4")
    assert "another video (high.mp4)" in text and "0.00-0.50 s" in text


def test_serve_command_serves_the_page_on_localhost_only(
    checkpoint: Path, videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """``avlearn serve`` loads the checkpoint, binds 127.0.0.1, serves the page and the folder's
    videos but no other file (not the working directory's either), limits uploads, then stops
    (``block_thread`` replaced by these requests)."""
    seen: dict[str, Any] = {}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("private")
    for key in ("GRADIO_ANALYTICS_ENABLED", "GRADIO_TEMP_DIR", "HF_HUB_OFFLINE"):  # main sets them
        monkeypatch.delenv(key, raising=False)

    def visit(self: gr.Blocks) -> None:
        url = re.search(r"open (\S+)", capsys.readouterr().out)
        assert url, "the address is printed"
        seen["url"] = url[1]
        seen["page"] = urllib.request.urlopen(url[1], timeout=30).read().decode()
        files = {"video": videos / "low.mp4", "secret": checkpoint, "cwd": tmp_path / "notes.txt"}
        for name, path in files.items():
            seen[name] = _status(f"{url[1]}gradio_api/file={path}")
        for name, size in (("small", 2_000), ("big", 20_000)):  # the limit: 0.01 MB = 10485 bytes
            seen[name] = _status(f"{url[1]}gradio_api/upload", _multipart(bytes(size)))

    monkeypatch.setattr(gr.Blocks, "block_thread", visit)
    argv = ["serve", "--checkpoint", str(checkpoint), "--videos", str(videos), "--port", "0",
            "--max-upload-mb", "0.01"]
    assert avlearn_main(argv) == 0
    assert seen["url"].startswith("http://127.0.0.1:")
    assert "avlearn serve" in seen["page"] and "https://fonts." not in seen["page"]
    assert seen["video"] == 200 and seen["secret"] == 403 and seen["cwd"] == 403
    assert seen["small"] == 200 and seen["big"] == 413


def _status(url: str, body: tuple[bytes, str] | None = None) -> int:
    """HTTP status of a GET (or a multipart POST of ``body``)."""
    request = urllib.request.Request(url, data=body[0] if body else None,
                                     headers={"Content-Type": body[1]} if body else {})
    try:
        status: int = urllib.request.urlopen(request, timeout=30).status
    except urllib.error.HTTPError as err:
        status = err.code
    return status


def _multipart(content: bytes) -> tuple[bytes, str]:
    """A form upload of one file (``files``), as the page sends it: ``(body, content type)``."""
    boundary = "avlearn-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"clip.mp4\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_serve_refuses_a_missing_folder_or_checkpoint(tmp_path: Path, checkpoint: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert avlearn_main(["serve", "--checkpoint", str(checkpoint), "--videos", str(tmp_path / "no")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert avlearn_main(["serve", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors" in capsys.readouterr().err
