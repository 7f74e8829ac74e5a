"""Configs are dataclasses with defaults; YAML only overrides them, strictly.

Unknown keys and wrong types raise `InputError` naming the key (like nanoGPT's configurator, but typed).
`--set key=value` overrides use dotted keys and YAML values: `--set x.values=[1,2,3] --set model=tiny`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

import yaml

from .errors import InputError


def load_yaml(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config: {str(path)!r} does not exist or is not a file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"config: {str(path)!r} is not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"config: {str(path)!r} must hold a mapping of keys to values")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` strings (values parsed as YAML) to a nested dict, in place, and return it."""
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"set: {item!r} is not allowed; use key=value (dotted keys for nesting)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise InputError(f"set: {key!r} goes inside {part!r}, which is not a mapping")
            node = node[part]
        node[parts[-1]] = value
    return data


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, key: str):
    """Check `value` against the annotation `tp`, converting only where lossless (int -> float)."""
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except InputError as e:
                errors.append(e)
        raise errors[-1] if len(errors) == 1 else InputError(
            f"{key}: {value!r} is not allowed; use {' or '.join(_type_name(o) for o in options if o is not type(None))}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise InputError(f"{key}: {value!r} is not allowed; use a mapping")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{key}: {value!r} is not allowed; use a list")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise InputError(f"{key}: {value!r} is not allowed; use a list of {len(args)} values")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else typing.Any
        items = [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputError(f"{key}: {value!r} is not allowed; use a mapping")
        return dict(value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
            return float(value)  # YAML 1.1 (PyYAML) reads 1e-3, without a dot, as a string
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool or tp is str:
        if isinstance(value, tp):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise InputError(f"{key}: {value!r} is not allowed; use a {_type_name(tp)}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from `data`: unknown keys and wrong types raise, naming the key."""
    if not isinstance(data, dict):
        raise InputError(f"{prefix.rstrip('.') or 'config'}: {data!r} is not allowed; use a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{prefix}{unknown[0]}: unknown key; known keys: {', '.join(fields)}")
    values = {name: _convert(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**values)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)
