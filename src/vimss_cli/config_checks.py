"""Type and range checks for the frozen configuration dataclasses (model, data, optim, run).

Each dataclass calls :func:`check_types` and then :func:`check_range` for its numbers from
``__post_init__``; both raise :class:`ConfigValueError`, whose message starts with the
field's name, so the caller can prefix the section (``optim.lr must be ...``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any, Literal


class ConfigValueError(ValueError):
    """A configuration field has a value of the wrong type or outside its range."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_types(instance: Any) -> None:
    """Every field of a dataclass instance against its annotation: ``int`` (not a bool),
    ``float`` (an int or a float, finite), ``bool``, ``str`` or a ``Literal`` of choices."""
    cls: type = type(instance)  # type(Any) is type[Any], which mypy does not see as Hashable
    hints = _hints(cls)
    for field in dataclasses.fields(instance):
        name, value, kind = field.name, getattr(instance, field.name), hints[field.name]
        if typing.get_origin(kind) is Literal:
            choices = typing.get_args(kind)
            if value not in choices or not isinstance(value, str):
                shown = ", ".join(repr(c) for c in choices)
                raise ConfigValueError(f"{name} must be one of {shown}, got {value!r}")
        elif kind is bool:
            if not isinstance(value, bool):
                raise ConfigValueError(f"{name} must be true or false, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigValueError(f"{name} must be an integer, got {value!r}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigValueError(f"{name} must be a finite number, got {value!r}")
        elif kind is str and not isinstance(value, str):
            raise ConfigValueError(f"{name} must be a string, got {value!r}")


def check_range(
    instance: Any,
    name: str,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> None:
    """``getattr(instance, name)`` within the bounds given (inclusive ``at_least``/``at_most``,
    exclusive ``above``/``below``)."""
    value = getattr(instance, name)
    for bound, fails, words in (
        (at_least, lambda v, b: v < b, "at least"),
        (above, lambda v, b: v <= b, "greater than"),
        (at_most, lambda v, b: v > b, "at most"),
        (below, lambda v, b: v >= b, "below"),
    ):
        if bound is not None and fails(value, bound):
            raise ConfigValueError(f"{name} must be {words} {_number(bound)}, got {value!r}")


def _number(value: float) -> str:
    """``1`` for 1.0, ``0.2`` for 0.2, ``1e+30`` for 1e30 (not its 31 digits)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else str(value)
