"""A run's training history: ``RUN/history.jsonl``, one JSON object per logged step.

The trainer appends a row before each checkpoint and, on resume, keeps only the rows up to the
checkpoint's step, so every step appears exactly once across kills and resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

from latentworld.common.errors import RunDirError

HISTORY_FILE = "history.jsonl"


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The logged scalars of a run, one dictionary per logged step.

    A last line without its newline (a write cut off by a kill) is skipped.

    Raises:
        RunDirError: another line is not a JSON object with a ``step``.
    """
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not (isinstance(row, dict) and isinstance(row.get("step"), int)):
            if number == len(lines):
                break
            raise RunDirError(f"{path} line {number} is not a history row (JSON with a step); delete that line")
        rows.append(row)
    return rows
