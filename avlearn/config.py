"""Typed configs: dataclasses loaded from YAML, validated once, overridden by dotted ``key=value``.

A YAML file may extend others: ``base: ../data/kinetics400.yaml`` (or a list of files, later ones
winning) in any mapping, resolved relative to the file that names it, is loaded first and the
mapping's own keys are deep-merged over it (mappings merge, scalars and lists replace). A
top-level ``base`` extends a whole config; a ``base`` inside a section (``data: {base: ...}``)
extends that section with a file of the section's shape (``configs/data/*.yaml``). Dotted
overrides apply last. The resolved config has no ``base`` key left.

Every error is a :class:`ConfigError` naming the dotted key, the bad value and what is allowed:
an unknown or misspelt key names the valid keys; a value of the wrong type names the expected
type; a value a config class refuses (``__post_init__``) names its full dotted key. Errors of
:func:`load_config` also say which file (or override) set the key. Configs are frozen after loading.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from avlearn.configs import resolve_config

__all__ = [
    "BASE_KEY",
    "ConfigError",
    "InvalidValue",
    "from_dict",
    "load_config",
    "parse_overrides",
    "resolve_config_file",
    "to_dict",
]

T = TypeVar("T")

BASE_KEY = "base"
"""The key that names the file(s) a YAML mapping extends."""


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and the fix.

    ``key``: the dotted key at fault when one is known (``""`` otherwise).
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class InvalidValue(ConfigError):
    """A value a config class refuses, raised from its ``__post_init__``.

    The class does not know where it sits in a run config, so it names the field relative to
    itself; :func:`from_dict` re-raises it under the full dotted key (``data.video_aug.hue``).

    Args:
        field: the field (or a dotted path below the class) at fault, e.g. ``"hue"``.
        value: its value.
        allowed: what is allowed, e.g. ``"must be in [0, 0.5]"``.
        section: the name shown when the class is built directly rather than from a config file.
    """

    def __init__(self, field: str, value: Any, allowed: str, section: str = "") -> None:
        self.field, self.value, self.allowed, self.section = field, value, allowed, section
        key = f"{section}.{field}" if section else field
        super().__init__(f"{key}={value!r} is invalid: {allowed}", key=key)

    def within(self, section: str) -> InvalidValue:
        """The same error for the class placed at dotted key ``section`` (``""``: the top)."""
        return InvalidValue(self.field, self.value, self.allowed, section)


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} matches none of {tp}", key=where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}", key=where)
        return value
    if isinstance(tp, type) and hasattr(tp, "from_config"):  # a section that picks its own type
        return tp.from_config(value, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}", key=where
            )
        return from_dict(tp, value, prefix=f"{where}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", key=where)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}", key=where)
        return dict(value)
    return _coerce_scalar(value, tp, where)


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept it as the number it means.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}", key=where)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}", key=where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}", key=where)
        return value
    if tp is str:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a string, got {value!r}", key=where)
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "", context: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    ``prefix``: the dotted key of ``cls`` in the whole config (``"data.video_aug."``), used in
    messages. Whatever the class's own checks refuse comes back as a :class:`ConfigError` under
    that prefix. ``context`` names whose keys these are in the unknown-key message (default: the
    section's).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            valid = sorted(fields)
            raise ConfigError(
                f"unknown config key '{prefix}{key}'.{_suggest(key, valid)} "
                f"Valid keys {context or 'under ' + repr(prefix.rstrip('.') or '<top>')}: {', '.join(valid)}",
                key=f"{prefix}{key}",
            )
    kwargs = {key: _coerce(value, hints[key], f"{prefix}{key}") for key, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        keys = [prefix + m for m in missing]
        raise ConfigError(f"missing required config key(s): {', '.join(keys)}", key=keys[0])
    return _construct(cls, kwargs, prefix.rstrip("."))


def _construct(cls: type[T], kwargs: dict[str, Any], section: str) -> T:
    """``cls(**kwargs)``, its refusals as :class:`ConfigError` under the dotted key ``section``."""
    try:
        return cls(**kwargs)
    except InvalidValue as err:
        raise err.within(section) from None
    except ConfigError:
        raise  # already names its full key
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{section}: {err}" if section else str(err), key=section) from None


def _plain(value: Any) -> Any:
    if hasattr(value, "to_config_dict"):  # a section that writes its own form (see ``from_config``)
        return value.to_config_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for saving next to checkpoints)."""
    out: dict[str, Any] = _plain(cfg)
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["data.fps=8", "optim.lr=1e-3"]`` into a nested dict; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like dotted.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': the value is not valid YAML ({err})") from None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is set both as a value and a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` deep-merged over ``base``; a section whose ``name`` changes (``objective.name=vicreg``
    over an ``infonce`` section) replaces the old one, whose keys belong to what it named."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        renamed = (isinstance(value, dict) and "name" in value and isinstance(old, dict)
                   and value["name"] != old.get("name"))
        if isinstance(value, dict) and isinstance(old, dict) and not renamed:
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- base files

Sources = dict[str, str]
"""Dotted key -> where its value was set (a file, or an override)."""


def _yaml_problem(path: Path, err: yaml.YAMLError) -> str:
    """``FILE:LINE:COLUMN: not valid YAML: what`` (PyYAML's own text names ``<unicode string>``)."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = " ".join(str(part) for part in (getattr(err, "context", None), getattr(err, "problem", None))
                    if part) or str(err).splitlines()[0]
    return (f"{where}: not valid YAML: {what}; fix the syntax there (an unclosed bracket or quote, "
            "or a tab or misaligned indent on that line or the one before)")


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in YAML file ``path``; an empty file is refused (it would mean every default)."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_problem(path, err)) from None
    if loaded is None:
        raise ConfigError(
            f"{path}: the config file is empty, which would run every default (the full-size paper "
            "settings); start from a shipped config (e.g. --config pretrain/synth_cpu.yaml) or name one "
            "with `base: FILE` in it"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys, got {type(loaded).__name__}")
    return loaded


def _base_paths(value: Any, file: Path, where: str) -> list[Path]:
    """The files named by a ``base`` entry of ``file``, relative to ``file``'s folder."""
    names = [] if value is None else value if isinstance(value, list) else [value]
    if not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"{file}: {where}={value!r} is invalid: must be a YAML file path (relative to this file) "
            "or a list of them",
            key=where,
        )
    return [Path(os.path.normpath(file.parent / n)) for n in names]


def _load_file(path: Path, chain: tuple[Path, ...], asked_by: str) -> tuple[dict[str, Any], Sources]:
    """``path`` read with its bases resolved; ``chain``: the files that led here (for cycles)."""
    if any(path.resolve() == seen.resolve() for seen in chain):
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"config base files form a cycle: {cycle}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}{asked_by}")
    return _resolve(_read_yaml(path), path, (*chain, path), "")


def _resolve(
    node: dict[str, Any], file: Path, chain: tuple[Path, ...], prefix: str
) -> tuple[dict[str, Any], Sources]:
    """Mapping ``node`` of ``file`` (at dotted ``prefix``) with every ``base`` in it resolved."""
    own: dict[str, Any] = {}
    own_sources: Sources = {}
    for key, value in node.items():
        if key == BASE_KEY:
            continue
        if isinstance(value, dict):
            value, inner = _resolve(value, file, chain, f"{prefix}{key}.")
            own_sources.update(inner)
        own[key] = value
        own_sources[f"{prefix}{key}"] = str(file)
    if BASE_KEY not in node:
        return own, own_sources
    merged: dict[str, Any] = {}
    sources: Sources = {}
    for base in _base_paths(node[BASE_KEY], file, f"{prefix}{BASE_KEY}"):
        data, base_sources = _load_file(base, chain, f" (named by {prefix}{BASE_KEY} in {file})")
        merged = _merge(merged, data)
        sources.update({f"{prefix}{k}": s for k, s in base_sources.items()})
    for key, value in own.items():
        if not isinstance(value, dict):  # replaces whatever the bases had below it
            sources = {k: s for k, s in sources.items() if not k.startswith(f"{prefix}{key}.")}
    return _merge(merged, own), {**sources, **own_sources}


def resolve_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of YAML config ``path`` with its base files merged in (no ``base`` key left)."""
    return _load_file(Path(path), (), "")[0]


def _origin(key: str, sources: Sources, path: Path | None) -> str:
    """`` (in FILE)`` or `` (set by override ...)`` for the most specific known part of ``key``;
    for an error that names no key, every place the config came from."""
    parts = key.split(".") if key else []
    for n in range(len(parts), 0, -1):
        source = sources.get(".".join(parts[:n]))
        if source is not None:
            return f" ({source})"
    places = [f"in {path}"] if path is not None else []
    if any(s != f"in {path}" and s.startswith("in ") for s in sources.values()):
        places.append("its base files")
    if any(s.startswith("set by override") for s in sources.values()):
        places.append("the overrides")
    if not places:
        return ""
    return f" ({places[0] if len(places) == 1 else ', '.join(places[:-1]) + ' or ' + places[-1]})"


def _field_names(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                partial: bool = False) -> T:
    """Load ``cls`` from a YAML file and its bases (defaults when ``path`` is None) plus dotted overrides.

    ``path`` is a file, or the name of a shipped config (:func:`avlearn.configs.resolve_config`).
    ``partial``: read only the file's top-level keys that are fields of ``cls`` and leave the
    others unchecked (a command that reads part of another command's config, e.g. the ``data``
    section of a pretraining run's); overrides are still checked against ``cls``.
    """
    data: dict[str, Any] = {}
    sources: Sources = {}
    if path is not None:
        try:
            path = resolve_config(path)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
        data, sources = _load_file(path, (), "")
        sources = {k: f"in {s}" for k, s in sources.items()}
        if partial:
            data = {k: v for k, v in data.items() if k in _field_names(cls)}
    data = _merge(data, parse_overrides(overrides or []))
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        sources = {k: s for k, s in sources.items() if not k.startswith(f"{key}.")}
        sources[key] = f"set by override {item}"
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{err}{_origin(err.key, sources, path)}", key=err.key) from None
