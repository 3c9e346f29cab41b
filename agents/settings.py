"""``--set KEY=VALUE`` overrides of a policy optimiser's settings.

The settings classes declare their types and ranges with :func:`latentworld.common.settings.setting`, so
an override is read and checked exactly as a training config's field is (``1e-3`` and ``800`` as
numbers, a fractional count or a value outside its range refused with one error naming the key).
"""

from __future__ import annotations

from typing import Any

import yaml

from latentworld.common.errors import ConfigError
from latentworld.common.settings import from_mapping


def apply_overrides(config_class: type, pairs: list[str], **fixed: Any) -> Any:
    """Build ``config_class`` from ``KEY=VALUE`` strings; ``fixed`` values have their own CLI option."""
    values: dict[str, Any] = dict(fixed)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        if key in fixed:
            raise ConfigError(f"--set {key}: set it with --{key} instead")
        try:
            values[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML") from None
    return from_mapping(config_class, values, "--set")
