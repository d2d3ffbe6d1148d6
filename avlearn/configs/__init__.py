"""The shipped YAML configs (package data), found by name from any folder.

``--config`` takes a file path; a relative path that is not an existing file is looked up among
the shipped configs, with or without a leading ``configs/`` (or ``avlearn/configs/``), so
``pretrain/synth_cpu.yaml`` and ``configs/pretrain/synth_cpu.yaml`` both name
``avlearn/configs/pretrain/synth_cpu.yaml`` in a checkout and in an installed wheel alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path, PurePath

__all__ = ["resolve_config", "shipped_configs", "shipped_root"]


def shipped_root() -> Path:
    """The folder of the shipped configs (``avlearn/configs`` of the checkout or the installed wheel)."""
    root = resources.files(__name__)
    if not isinstance(root, Path):  # a zip import: configs must be files that YAML paths can name
        raise RuntimeError(f"avlearn's configs are not on the file system ({root}); install avlearn unzipped")
    return root


def shipped_configs() -> list[str]:
    """Names of every shipped config relative to :func:`shipped_root`, e.g. ``pretrain/synth_cpu.yaml``."""
    root = shipped_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def _shipped_name(path: PurePath) -> str | None:
    """``pretrain/x.yaml`` for ``pretrain/x.yaml``, ``configs/pretrain/x.yaml`` or ``avlearn/configs/...``."""
    if path.is_absolute() or ".." in path.parts:
        return None
    parts = path.parts
    for prefix in (("avlearn", "configs"), ("configs",)):
        if parts[: len(prefix)] == prefix:
            parts = parts[len(prefix) :]
            break
    return PurePath(*parts).as_posix() if parts else None


def resolve_config(name: str | Path) -> Path:
    """The config file ``name`` names: an existing file as given, else the shipped config of that name.

    Raises ``FileNotFoundError`` naming the path and listing the shipped configs.
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = _shipped_name(path)
    if shipped is not None and (shipped_root() / shipped).is_file():
        return shipped_root() / shipped
    raise FileNotFoundError(
        f"config file not found: {name} (neither a file from {Path.cwd()} nor a shipped config; "
        f"shipped: {', '.join(shipped_configs())})"
    )
