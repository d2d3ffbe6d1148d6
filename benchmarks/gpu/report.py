"""The Markdown report of a ``benchmarks/gpu`` results dict (``gpu_<device>.md``)."""

from __future__ import annotations

from typing import Any

__all__ = ["headline", "markdown"]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _stages(result: dict[str, Any]) -> list[str]:
    rows = [[name, s["status"], s.get("seconds"), (s.get("message") or "").replace("|", "/")]
            for name, s in result["stages"].items()]
    return ["## Stages", "", *_table(["stage", "status", "seconds", "message"], rows)]


def _tests(s: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{n} {k}" for k, n in s.get("counts", {}).items()) or "-"
    return ["## GPU-marked tests", "", f"`{s.get('command', '')}`: {counts}", "", "```",
            s.get("tail", ""), "```", ""]


def _smoke(s: dict[str, Any]) -> list[str]:
    rows = [[r["objective"], r["precision"], r["steps"], _ok(r), _num(r["first_loss"]), _num(r["last_loss"])]
            for r in s.get("pretrain", [])]
    ft = s.get("finetune", {})
    return [f"## Smoke runs on {s.get('device')} ({s.get('model')}, clips in memory)", "",
            *_table(["pretrain objective", "precision", "steps", "ok", "first loss", "last loss"], rows),
            f"Fine-tuning from the AVID bf16 run: ok {_ok(ft)}, {ft.get('steps')} steps, "
            f"last loss {_num(ft.get('last_loss'))}, video top-1 {_num(ft.get('video_top1'))}", ""]


def _ok(r: dict[str, Any]) -> str:
    why = str(r.get("error", "not finished or non-finite")).replace("|", "/")
    return "yes" if r.get("ok") else f"NO: {why}"


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _encoders(s: dict[str, Any], peak: dict[str, Any] | None) -> list[str]:
    header = ["video + audio", "clip", "batch", "layout", "clips/s", "step ms", "data", "forward",
              "objective + bank", "backward", "optimiser", "obj. share", "GFLOP/clip", "MFU", "peak GiB",
              "warm-up s"]
    rows = []
    for r in s.get("rows", []):
        name = f"{r['video_arch']} + {r['audio_arch']}"
        clip = f"{r['frames']}x{r['crop']}²"
        if r.get("status") != "ok":
            rows.append([name, clip, r["batch"], r["layout"], r["status"], r.get("message", "")]
                        + [""] * (len(header) - 6))
            continue
        parts = [f"{1e3 * r['parts_s'][k]:.1f}" for k in ("data", "forward", "objective", "backward",
                                                           "optimizer")]
        rows.append([name, clip, r["batch"], r["layout"], r["clips_per_s"], f"{1e3 * r['step_s']:.1f}",
                     *parts, _pct(r["objective_share"]), r["gflop_per_clip"], _pct(r["mfu"]),
                     r["peak_memory_gib"], r["compile_s"]])
    against = f"{peak['bf16_flops'] / 1e12:.3g} TFLOP/s bf16 ({peak['source']})" if peak else "-"
    return ["## Pretraining step, bf16 autocast", "",
            f"Audio: spectrogram {s.get('spec')} per clip. Part times (ms) come from steps synchronised "
            "after every part; clips/s, step ms and MFU from unsynchronised steps. MFU against "
            f"{against}.", "", *_table(header, rows)]


def _layers(s: dict[str, Any]) -> list[str]:
    out = ["## Convolutions of the video encoders, each alone (bf16, forward + backward)", ""]
    for video, t in s.get("tables", {}).items():
        out += [f"{video} at {t['crop']}² batch {t['batch']}, channels_last {t['channels_last']}: "
                f"{_pct(t['memory_bound_time_share'])} of the convolutions' time in memory-bound ones "
                "(intensity below the device's ridge point); the ten slowest:", ""]
        rows = [[", ".join(r["layers"][:3]) + (" ..." if len(r["layers"]) > 3 else ""),
                 "x".join(map(str, r["kernel"])), "->".join(map(str, r["channels"])),
                 "x".join(map(str, r["input"][2:])), r["ms"], _pct(r["time_share"]), r["tflops"],
                 r["intensity"], r["memory_bound"], "yes" if r.get("input_grad", True) else "no",
                 r.get("ms_input_channels_padded_to_8", "")] for r in t["rows"][:10]]
        out += _table(["layers", "kernel", "channels", "input T x H x W", "ms", "share", "TFLOP/s",
                       "FLOP/byte", "memory-bound", "input grad", "ms, input channels padded to 8"], rows)
    return out


def _frames(s: dict[str, Any]) -> list[str]:
    header = ["clip", "CPU ms/clip (1 core)", "clips/s per core", "cores per GPU", "GPU ms/clip (batched)",
              "bytes/clip", "bytes/s of video", "JPEG PSNR dB", "CPU vs GPU max diff"]
    rows = [[f"{r['frames']}x{r['decode_size']} px (crop {r['crop']})", r["cpu_ms_per_clip"],
             r["cpu_clips_per_s_per_core"], r["cores_per_gpu"], r["gpu_ms_per_clip"], r["bytes_per_clip"],
             r["bytes_per_video_second"], r["jpeg_psnr_db"], r["cpu_gpu_max_diff"]] for r in s["rows"]]
    nvdec = s.get("nvdec", {})
    how = nvdec.get("message") or f"{nvdec.get('ms_per_frame')} ms/frame"
    return ["## JPEG + PCM frames: decoding cost per clip", "",
            "Frame decoding only (synthetic smooth frames); cores per GPU against AVID-CMA's H200 step rate.",
            "", *_table(header, rows), f"NVDEC (torchcodec): {nvdec.get('status')}: {how}", ""]


def _e2e(s: dict[str, Any]) -> list[str]:
    p, ft, loc = s.get("pretrain", {}), s.get("finetune", {}), s.get("localization", {})
    return ["## End to end on the device", "",
            f"`avlearn pretrain` (paper preset) from `{s.get('shards')}`, {s.get('workers')} workers: "
            f"{p.get('clips_per_s')} clips/s, data wait {_pct(p.get('data_wait_share'))} of the step, "
            f"peak GPU memory {p.get('peak_gpu_memory_mib')} MiB; SIGTERM exit {p.get('signal_exit_code')}, "
            f"--resume exit {p.get('resume_exit_code')} (ok {_ok(p)}).", "",
            f"Fine-tuning from it on {ft.get('device')}: ok {_ok(ft)}, {ft.get('steps')} steps.", "",
            f"`avlearn evaluate localization` ({loc.get('device', '-')}): ok {_ok(loc)} "
            f"{loc.get('message', '')}", ""]


def _lever_row(r: dict[str, Any]) -> list[Any]:
    if r["status"] != "ok":
        return [r["lever"], r["status"], r.get("message", ""), "", "", "", "", ""]
    return [r["lever"], r["status"], f"{1e3 * r['step_s']:.1f}", r["clips_per_s"], _pct(r["objective_share"]),
            r["step_over_convolutions"], _pct(r["mfu"]), r["compile_s"]]


def _step(s: dict[str, Any]) -> list[str]:
    setup, conv, opt = s["setup"], s["convolutions"], s.get("optimizer", {})
    clip = f"{setup['frames']}x{setup['crop']}², batch {setup['batch']}"
    return [f"## The step against its convolutions ({setup['video_arch']} + {setup['audio_arch']}, {clip}, "
            "bf16, channels_last, cuDNN autotuned)", "",
            f"Convolutions alone (forward + backward): video {conv['video_ms']} ms + audio "
            f"{conv['audio_ms']} ms = {conv['total_ms']} ms. Goals: objective + bank <= 5 % of the step, "
            "step <= 1.25x the convolutions.", "",
            *_table(["lever", "status", "step ms", "clips/s", "objective + bank", "step / convolutions",
                     "MFU", "warm-up s"], [_lever_row(r) for r in s["levers"]]),
            f"Adam step alone over {opt.get('parameters')} parameters: default {opt.get('default_ms')} ms, "
            f"fused {opt.get('fused_ms')} ms.", ""]


def markdown(result: dict[str, Any]) -> str:
    """The report: machine, versions, command, each stage's status and tables."""
    m, v, stages = result["machine"], result["versions"], result["stages"]
    dry = " (dry run on CPU)" if result["dry_run"] else ""
    lines = [f"# GPU checks and measurements: {m['processor']}{dry}",
             "", f"`{result['command']}`, {result['seconds']} s.", "",
             "Machine: " + ", ".join(f"{k} {val}" for k, val in m.items()), "",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), "",
             "cuDNN autotuning (`torch.backends.cudnn.benchmark`): "
             f"{result.get('cudnn_benchmark', False)}", "",
             *_stages(result)]
    peak = stages.get("peak", {})
    if peak.get("status") == "ok":
        used = peak["peak"]
        lines += [f"bf16 matmul {peak['matmul_n']}³ measured {peak['measured_tflops']} TFLOP/s; "
                  f"peak used for MFU {used['bf16_flops'] / 1e12:.3g} TFLOP/s ({used['source']}).", ""]
    if stages.get("tests", {}).get("status") in ("ok", "failed") and "counts" in stages["tests"]:
        lines += _tests(stages["tests"])
    if "pretrain" in stages.get("smoke", {}):
        lines += _smoke(stages["smoke"])
    if "rows" in stages.get("encoders", {}):
        lines += _encoders(stages["encoders"], peak.get("peak"))
    if "tables" in stages.get("layers", {}):
        lines += _layers(stages["layers"])
    loader = stages.get("loader", {})
    if loader.get("status") == "ok":
        lines += ["## Loader with augmentation on the device", "",
                  f"{loader['clips_per_s']} clips/s, data wait {_pct(loader['data_wait_share'])} of the "
                  f"step, {loader['workers']} workers, batch {loader['batch']}.", ""]
    for name, section in (("frames", _frames), ("e2e", _e2e), ("step", _step)):
        if stages.get(name, {}).get("status") in ("ok", "failed") and (
                "rows" in stages[name] or "pretrain" in stages[name] or "levers" in stages[name]):
            lines += section(stages[name])
    return "\n".join(lines)


def _best_rows(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The fastest encoder-stage row at the main batch, per (model, clip size)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in result["stages"].get("encoders", {}).get("rows", []):
        key = (f"{r['video_arch']} + {r['audio_arch']}", f"{r['frames']}x{r['crop']}²")
        if r.get("status") == "ok" and r["batch"] == result["sizes"]["batch"] and (
                key not in best or r["clips_per_s"] > best[key]["clips_per_s"]):
            best[key] = r
    return best


def headline(result: dict[str, Any]) -> str:
    """The best clips/s and MFU per model and clip size at the main batch, and the tests' counts."""
    steps = "; ".join(f"{m.split(' + ')[0]} {c} {r['clips_per_s']:.0f} clips/s (MFU {100 * r['mfu']:.0f} %)"
                      for (m, c), r in _best_rows(result).items())
    tests = result["stages"].get("tests", {})
    counts = ", ".join(f"{n} {k}" for k, n in tests.get("counts", {}).items()) or tests.get("status", "-")
    how = ("dry run on CPU, " if result.get("dry_run") else "") + (
        "cuDNN autotuned, " if result.get("cudnn_benchmark") else "")
    return f"{how}bf16 step at batch {result['sizes']['batch']}: {steps or '-'}; GPU tests: {counts}"
