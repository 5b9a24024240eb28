"""Config sections checked against the options a part declares.

A stage declares its options as a dataclass; `parse_options` checks a YAML section against it, so a misspelt
key (`backnd`), a wrong type (`ttl_s: "abc"`) or a key that belongs nowhere (`features.support.max_false_hits`)
is refused at start with the file, the line, the key path and the accepted keys, instead of being ignored.
Supported field types: str, int, float, bool, Literal, `X | None`, list[X], dict[str, X], nested dataclasses
and Any (taken as it is; the part checks it itself).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config the gateway refuses to start with; the message names where and why."""


@dataclass(frozen=True)
class Where:
    """A place in a config file: what to show (`path`) and where to find its line (`raw`)."""

    source: str = "config"
    path: str = ""
    raw: str = ""
    lines: dict[str, int] | None = None

    def key(self, name: str, raw: str | None = None) -> Where:
        def join(base: str, part: str) -> str:
            return f"{base}.{part}" if base else part

        return Where(self.source, join(self.path, name), join(self.raw, raw if raw is not None else name),
                     self.lines)

    def item(self, index: int) -> Where:
        return Where(self.source, f"{self.path}[{index}]", f"{self.raw}[{index}]", self.lines)

    def line(self) -> int | None:
        if not self.lines:
            return None
        raw = self.raw
        while raw:  # the nearest enclosing key that has a line
            if raw in self.lines:
                return self.lines[raw]
            raw = raw[: max(raw.rfind("."), raw.rfind("["), 0)]
        return None

    def error(self, message: str) -> ConfigError:
        line = self.line()
        at = f"{self.source}" + (f", line {line}" if line else "")
        return ConfigError(f"{at}: {self.path or '(top level)'}: {message}")


def line_map(text: str) -> dict[str, int]:
    """Key path ("stages[1].exact_cache.ttl_s") -> 1-based line, from the YAML text."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                out[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                sub = f"{path}[{i}]"
                out[sub] = value.start_mark.line + 1
                walk(value, sub)

    if root is not None:
        walk(root, "")
    return out


def describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"a list of {describe(typing.get_args(tp)[0])}"[:80]
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return "a value"


def convert(tp: Any, value: Any, where: Where) -> Any:
    """`value` checked (and, for dataclasses, built) as a `tp`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # X | None: X's own error, which names the key inside it
            return convert(others[0], value, where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, where)
            except ConfigError:
                continue
        raise where.error(f"expected {describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise where.error(f"expected {describe(tp)}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise where.error(f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise where.error(f"expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise where.error(f"expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [convert(item, v, where.item(i)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise where.error(f"expected a mapping, got {value!r}")
        key_type, item = typing.get_args(tp)
        return {convert(key_type, k if key_type is not str else str(k), where.key(str(k))):
                convert(item, v, where.key(str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return parse_options(tp, value, where)
    raise TypeError(f"options type {tp!r} is not supported")  # a programming error in the part


def parse_options(cls: type[T], data: Any, where: Where) -> T:
    """Build the options dataclass `cls` from a config mapping, or raise ConfigError naming the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise where.error(f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            guess = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            accepted = ", ".join(fields) or "none"
            raise where.key(str(key)).error(f"unknown key (accepted: {accepted}){hint}")
        values[key] = convert(hints[key], value, where.key(str(key)))
    for name, f in fields.items():
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.error(f"missing required key '{name}'")
    options = cls(**values)
    check = getattr(options, "check", None)
    if callable(check):
        check(where)  # cross-field rules the types cannot say
    return options
