"""The ``avlearn`` command: one entry point, subcommands dispatched to module ``main(argv)`` functions.

Subcommand modules are imported lazily so ``avlearn --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# name -> (module with main(argv), one-line help). Nested groups use "group sub".
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demos.demo", "run the embedded end-to-end demo on a generated synthetic collection"),
    "synth": ("data_prep.synth", "generate the synthetic audio-visual collection"),
    "prepare index": ("data_prep.index", "scan a folder or list of videos and write a manifest"),
    "prepare reencode": ("data_prep.reencode", "re-encode a collection to a training-friendly form"),
    "prepare shard": ("data_prep.shard", "pack a manifest's videos into WebDataset tar shards + index"),
    "prepare audio-stats": ("data_prep.audio_stats", "per-frequency spectrogram mean/std over a manifest"),
    "convert avid-cma": ("avlearn.models.convert_avid", "AVID-CMA release checkpoint -> our export"),
    "convert cav-mae": ("avlearn.models.convert_cav_mae", "CAV-MAE release checkpoint -> our export"),
    "pretrain": ("avlearn.train.pretrain", "self-supervised audio-visual pretraining (AVID / CMA / InfoNCE)"),
    "localize": ("avlearn.localization.cli", "heatmap video of where the sound is"),
    "serve": ("avlearn.serve.app", "local web page: pick a video and a sound, see where the model hears it"),
    "evaluate localization": ("avlearn.localization.evaluate",
                              "cIoU / AUC (+ AP with negatives): synthetic, VGG-SS, Flickr-SoundNet"),
    "finetune": ("avlearn.train.finetune", "fine-tune a (pretrained) video encoder + linear classifier"),
    "linear-probe": ("avlearn.train.linear_probe", "linear classifier on frozen, cached encoder features"),
    "evaluate retrieval": ("avlearn.eval.retrieval_cli", "video<->audio recall@1/5/10 on held-out clips"),
    "analyze cka": ("avlearn.analysis.cka_cli", "CKA between every block of two models on the same clips"),
}


def _usage(group: str = "") -> str:
    """The command list; of one group (``prepare``) when ``group`` is given."""
    names = {n: v for n, v in COMMANDS.items() if not group or n.startswith(group + " ")}
    width = max(len(name) for name in names)
    head = f"avlearn {group} SUBCOMMAND" if group else "avlearn COMMAND"
    lines = [f"usage: {head} [ARGS...]   ({head} --help for its options)", "",
             f"{group + ' ' if group else ''}commands:"]
    lines += [f"  {name:<{width}}  {helptext}" for name, (_, helptext) in names.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``avlearn <command> [args]``; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from avlearn import __version__

        print(__version__)
        return 0
    name = " ".join(args[:2]) if " ".join(args[:2]) in COMMANDS else args[0]
    groups = sorted({n.split()[0] for n in COMMANDS if " " in n})
    if name in groups and args[1:2] and args[1] in ("-h", "--help"):  # avlearn prepare --help
        print(_usage(name))
        return 0
    if name not in COMMANDS:
        hint = ""
        if name in groups:
            subs = [n.split()[1] for n in COMMANDS if n.startswith(name + " ")]
            hint = f" '{name}' needs a subcommand: {', '.join(subs)}."
        print(f"avlearn: unknown command '{' '.join(args[:2]) if name in groups else name}'.{hint}\n",
              file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    module_name, _ = COMMANDS[name]
    entry: Callable[[list[str]], int | None] = importlib.import_module(module_name).main
    rest = args[len(name.split()) :]
    try:
        return int(entry(rest) or 0)
    finally:
        if "torch.distributed" in sys.modules:  # a command that ran (torchrun / accelerate launch)
            from avlearn.distributed import leave_process_group

            leave_process_group()


if __name__ == "__main__":
    sys.exit(main())
