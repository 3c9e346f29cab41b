"""Typed, range-checked settings for dataclasses: declare a field with :func:`setting`, call
:func:`check_settings` in ``__post_init__``.

Values are coerced by the field's annotation (``int``, ``float``, ``str``, ``bool``, optionally
``| None``): a YAML 1.1 float spelling such as ``1e-3`` (which PyYAML reads as a string) becomes a
float, an integral number such as ``1e4`` an int; a fractional value for an int, a bool for a
number, NaN or infinity, an option not in ``choices`` or a value outside ``[low, high]`` raises
one :class:`~latentworld.common.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from latentworld.common.errors import ConfigError

MAX_SEED = 2**32 - 1  # the largest seed numpy, torch and SB3 all accept


@dataclass(frozen=True)
class Rule:
    """What a setting accepts beyond its type."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """Exclude ``low`` itself (e.g. a learning rate > 0)."""
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def violation(self, value: Any) -> str | None:
        """Why ``value`` breaks the rule, or None."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(map(repr, self.choices))}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if too_low or too_high:
                return f"must lie in {self.interval()}"
        return None

    def interval(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}" if isinstance(self.low, float) else str(self.low)
        high = "inf" if self.high is None else f"{self.high:g}" if isinstance(self.high, float) else str(self.high)
        return f"{left}{low}, {high}{right}"


def setting(default: Any, **rule: Any) -> Any:
    """A dataclass field with a default and a :class:`Rule` (``low``, ``high``, ``choices``, ...)."""
    return field(default=default, metadata={"rule": Rule(**rule)})


def coerce(value: Any, annotation: str, name: str) -> Any:
    """``value`` as the type named by ``annotation`` (a string under postponed annotations).

    Raises:
        ConfigError: the value cannot be read as that type.
    """
    kinds = [part.strip() for part in str(annotation).split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{name}: a value is required (got null)")
    kind = kinds[0]
    if kind in ("int", "float"):
        expected = "an integer" if kind == "int" else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{name}: expected {expected}, got {value!r}")
        number = value
        if isinstance(value, str):
            try:
                number = int(value)
            except ValueError:
                try:
                    number = float(value)
                except ValueError:
                    raise ConfigError(f"{name}: expected {expected}, got {value!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(f"{name}: must be finite, got {value!r}")
        if kind == "float":
            try:
                return float(number)
            except OverflowError:
                raise ConfigError(f"{name}: must be finite, got {value!r}") from None
        if isinstance(number, float):
            if not number.is_integer():
                raise ConfigError(f"{name}: expected an integer, got {value!r}")
            return int(number)
        return number
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    if isinstance(value, dict):
        raise ConfigError(f"{name}: expected a {kind} object, got a mapping (build it with from_mapping)")
    return value  # nested settings are checked by their own class


def check_settings(instance: Any) -> None:
    """Coerce every field of a dataclass instance in place and check its :class:`Rule`."""
    for item in dataclasses.fields(instance):
        value = coerce(getattr(instance, item.name), item.type, item.name)
        rule = item.metadata.get("rule")
        problem = rule.violation(value) if rule is not None and value is not None else None
        if problem:
            raise ConfigError(f"{item.name}: {problem}, got {value!r}")
        object.__setattr__(instance, item.name, value)


def from_mapping(cls: type, values: Any, source: str, nested: dict[str, type] | None = None, section: str = ""
                 ) -> Any:
    """Build the dataclass ``cls`` from a mapping, refusing unknown keys; ``nested`` names fields that
    are themselves settings classes. Errors read ``"<source>: <section.field>: <problem>"``."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {section.rstrip('.') or 'the config'} must be a mapping of settings, got {values!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(section + name for name in unknown)}; "
                          f"known{' in ' + section.rstrip('.') if section else ''}: {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        sub = (nested or {}).get(name)
        kwargs[name] = from_mapping(sub, {} if value is None else value, source, None, f"{section}{name}.") \
            if sub else value
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {section}{err}") from None
