"""Values parsed by a field's declared type: command-line strings and papermill's Python values alike.

``bool`` ("true/false/1/0/yes/no/on/off"), ``int``, ``float``, tuples ("(192,224)", "192,224" or
"[192, 224]"), ``None`` ("none"/"null") where the type allows it, and ``Literal`` choices checked against
their options.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def hints(cls: type) -> dict[str, Any]:
    """The resolved field types of dataclass ``cls``."""
    return typing.get_type_hints(cls)


def type_name(tp: Any) -> str:
    """``tp`` as the error messages show it: ``int | tuple[int, ...]``, ``'c4' | 'c5' | 'fpn'``."""
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"tuple[{type_name(typing.get_args(tp)[0])}, ...]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _is_none(text: str) -> bool:
    return text.strip().lower() in ("none", "null")


def _coerce_union(value: Any, args: tuple[Any, ...]) -> Any:
    if type(None) in args and (value is None or (isinstance(value, str) and _is_none(value))):
        return None
    errors = []
    # scalars before tuples, so "256" stays an int in ``int | tuple[int, ...]``
    for a in sorted((a for a in args if a is not type(None)), key=lambda a: typing.get_origin(a) is tuple):
        try:
            return coerce(value, a)
        except ValueError as e:
            errors.append(str(e))
    raise ValueError("; ".join(errors))


def _coerce_tuple(value: Any, elem: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "([" and text[-1:] in ")]":
            text = text[1:-1]
        parts = [p.strip() for p in text.split(",")]
        value = [p for p in parts if p] if parts != [""] else []
    if not isinstance(value, (list, tuple)):
        value = [value]
    return tuple(coerce(v, elem) for v in value)


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is not a bool (true/false/1/0)")


def _coerce_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an int")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not an int")


def _coerce_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a float")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a float")


def coerce(value: Any, tp: Any) -> Any:
    """``value`` (a string from the command line, or a Python value) as type ``tp``; ValueError if not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, args)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin is tuple:
        return _coerce_tuple(value, args[0])
    if tp is bool:
        return _coerce_bool(value)
    if tp is int:
        return _coerce_int(value)
    if tp is float:
        return _coerce_float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{value!r} is not a str")
    raise TypeError(f"unsupported config field type {tp!r}")
