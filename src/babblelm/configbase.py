"""Typed dataclass configuration: build dataclasses from plain dicts, reporting every problem at once.

A field can carry bounds and a help text in its metadata::

    lr: float = field(default=3e-4, metadata={"min": 0.0, "help": "peak learning rate"})

`from_dict(cls, raw)` returns an instance or raises `ConfigError` listing each unknown key,
wrong type and out-of-range value with its dotted key path and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """One or more configuration problems; `problems` holds (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        where = f" in {source}" if source else ""
        if len(problems) == 1:
            path, msg = problems[0]
            super().__init__(f"invalid configuration{where}: {path or '<root>'}: {msg}")
        else:
            head = f"invalid configuration{where} ({len(problems)} problems):"
            super().__init__("\n".join([head] + [f"  {path or '<root>'}: {msg}" for path, msg in problems]))


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of str to {_type_name(get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, path: str, problems: list) -> Any:
    """Check `value` against type `tp`; return the converted value (or None after recording a problem)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list = []
            out = _convert(value, arg, path, trial)
            if not trial:
                return out
        problems.append((path, f"expected {_type_name(tp)}, got {value!r}"))
        return None
    if origin is Literal:
        if value in get_args(tp):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in get_args(tp):
            return str(value)  # YAML reads `rules: 2026` as a number
        problems.append((path, f"expected {_type_name(tp)}, got {value!r}"))
        return None
    if origin is list:
        if not isinstance(value, (list, tuple)):
            problems.append((path, f"expected {_type_name(tp)}, got {value!r}"))
            return None
        (item_tp,) = get_args(tp)
        return [_convert(v, item_tp, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append((path, f"expected {_type_name(tp)}, got {value!r}"))
            return None
        _, val_tp = get_args(tp)
        return {str(k): _convert(v, val_tp, f"{path}.{k}", problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append((path, f"expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}, got {value!r}"))
            return None
        return _build(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        number = _number(value)
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            problems.append((path, f"expected a finite number, got {value!r}"))
            return None
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    problems.append((path, f"expected {_type_name(tp)}, got {value!r}"))
    return None


def _number(value: Any) -> float | None:
    """A YAML value as a float, if it is one (YAML 1.1 reads `3e-4` as a string)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _check_range(value: Any, meta: dict, path: str, problems: list) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    lo, hi = meta.get("min"), meta.get("max")
    lo_open, hi_open = meta.get("min_exclusive", False), meta.get("max_exclusive", False)
    if lo is not None and (value < lo or (lo_open and value == lo)):
        problems.append((path, f"must be {'>' if lo_open else '>='} {lo}, got {value!r}"))
    if hi is not None and (value > hi or (hi_open and value == hi)):
        problems.append((path, f"must be {'<' if hi_open else '<='} {hi}, got {value!r}"))


def _build(cls: type, raw: dict, path: str, problems: list) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in raw:
        if key not in fields:
            problems.append((_join(path, key), f"unknown key; allowed keys: {', '.join(fields)}"))
    n_before = len(problems)
    kwargs = {}
    for name, f in fields.items():
        sub = _join(path, name)
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], sub, problems)
            _check_range(kwargs[name], dict(f.metadata), sub, problems)
        elif dataclasses.is_dataclass(hints[name]):  # an absent section is an empty one: its checks still run
            kwargs[name] = _build(hints[name], {}, sub, problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append((sub, f"required key missing ({_type_name(hints[name])})"))
    if len(problems) > n_before:
        return None
    obj = cls(**kwargs)
    for key, msg in getattr(obj, "validate", lambda: [])():
        problems.append((_join(path, key), msg))
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def from_dict(cls: type, raw: dict, source: str | None = None):
    """Build dataclass `cls` from `raw`, raising ConfigError with every problem found."""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise ConfigError([("", f"expected a mapping at the top level, got {type(raw).__name__}")], source)
    obj = _build(cls, raw, "", problems)
    if problems:
        raise ConfigError(problems, source)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list/scalars (for YAML/JSON)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` overrides (value parsed as YAML) to a raw config dict in place."""
    if overrides and not isinstance(raw, dict):
        raise ConfigError([("", f"--set needs a config whose top level is a mapping, got {type(raw).__name__}")])
    for item in overrides:
        if "=" not in item:
            raise ConfigError([(f"--set {item}", "expected key.path=value")])
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError([(f"--set {item}", "the key must be a dotted path such as optim.lr")])
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            reason = str(getattr(err, "problem", None) or err).strip().splitlines()[0]
            raise ConfigError([(key.strip(), f"--set value {text!r} is not valid YAML ({reason})")]) from None
        node = raw
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError([(".".join(parts[: i + 1]), f"cannot set a sub-key: the value there is {nxt!r}")])
            node = nxt
        node[parts[-1]] = value
    return raw
