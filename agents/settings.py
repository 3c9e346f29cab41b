"""Settings of the policy optimisers: typed dataclasses checked on construction, built from ``--set``.

Every integer field except ``seed`` is a count (iterations, steps, sizes) and must be >= 1; a field
that may be ``None`` means "the method's default". :func:`check_counts` reads this from the
annotations, so a new setting is checked by declaring it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def integer_field(field: dataclasses.Field) -> bool:
    """True for a field annotated ``int`` or ``int | None`` (annotations are strings here)."""
    return str(field.type).split(" ")[0] == "int"


def check_counts(config: Any) -> None:
    """Raise one ``ValueError`` naming the first integer setting (``seed`` aside) that is not an integer >= 1."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "seed" or not integer_field(field) or (value is None and "None" in str(field.type)):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{field.name} must be an integer >= 1, got {value!r}")


def apply_overrides(config_class: type, pairs: list[str], **fixed: Any) -> Any:
    """Build ``config_class`` from ``KEY=VALUE`` strings (numbers as in Python: ``1e-3``, ``800``)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    values: dict[str, Any] = dict(fixed)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE")
        if key not in fields:
            raise ValueError(f"--set {key}: unknown option; known: {', '.join(fields)}")
        if key in fixed:
            raise ValueError(f"--set {key}: set it with --{key} instead")
        integer = integer_field(fields[key])
        try:
            values[key] = int(text) if integer else float(text)
        except ValueError:
            raise ValueError(f"--set {key}={text}: expected {'an integer' if integer else 'a number'}") from None
    return config_class(**values)
