"""Experiment configs: one Python file per experiment with ``get_config() -> ConfigDict``.

We use ``ml_collections.ConfigDict`` (as big_vision does) rather than frozen dataclasses because
it gives typed, lockable nested configs for free: once locked, assigning an unknown key or a value
of the wrong type raises, which is exactly the check ``--config.a.b=value`` overrides need.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from fuse4seg_jax.errors import ConfigError

OVERRIDE_PREFIX = "--config."


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load ``get_config()`` from the Python file ``path`` and apply ``--config.key=value`` overrides.

    Arguments:
        path: a config file such as ``configs/demo.py``; ``file.py:arg`` passes ``arg`` to
            ``get_config(arg)`` (the baseline configs take ``demo`` or ``paper``).
        overrides: strings ``--config.a.b=value``; ``value`` is read as a Python literal when it
            parses as one (``3``, ``1e-4``, ``(1, 2)``, ``True``), else kept as a string; a
            boolean key also takes ``true`` / ``false``, as solver specs do.

    Returns:
        the locked config (unknown keys cannot be added afterwards).

    Raises:
        ConfigError: missing file, no ``get_config``, unknown key, or a value of the wrong type.
    """
    path, _, arg = str(path).partition(":")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"fuse4seg_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a user's config file failed to execute: say which file
        raise ConfigError(f"config file {path} failed to load: {err!r}") from err
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} has no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config file {path} rejected argument {arg!r}: {err}") from err
    config.lock()
    for item in overrides:
        apply_override(config, item)
    return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """Apply one ``--config.a.b=value`` string to ``config`` in place (see :func:`load_config`)."""
    if not item.startswith(OVERRIDE_PREFIX) or "=" not in item:
        raise ConfigError(f"cannot read override {item!r}: expected --config.<key>=<value>")
    key, raw = item[len(OVERRIDE_PREFIX) :].split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        if part not in node:
            raise ConfigError(f"unknown config key {'.'.join(parents[: i + 1])!r} in {item!r}")
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise ConfigError(f"unknown config key {key!r}; known here: {', '.join(sorted(node))}")
    old = node[leaf]
    value = _parse_value(raw, isinstance(old, bool))
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(old, tuple) and not isinstance(value, tuple):
        value = (value,)
    try:
        node[leaf] = value
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad value for config key {key!r}: {err}") from err


def _parse_value(raw: str, boolean: bool) -> Any:
    # lower-case true / false as well, as solver specs (bilevel.parse_specs) read them
    if boolean and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def to_json(config: ml_collections.ConfigDict) -> str:
    """The resolved config as stable, human-readable JSON (what a run directory records)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Keys (dotted) whose values differ between two config dicts (as JSON round-trips them)."""
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        name = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, prefix=f"{name}.")
        elif json.dumps(va, default=list) != json.dumps(vb, default=list):
            out.append(name)
    return out
