"""Crash-safe file writes: a temporary file in the target's folder, renamed into place on success,
and the checks that an output location may be written before any expensive work starts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latentworld.common.errors import RunDirError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_target(path: str | os.PathLike, suffix: str = TEMP_SUFFIX) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    A crash or kill inside the block leaves ``path`` as it was (and no partial file under its
    name; a kill -9 leaves the hidden temporary, which :func:`remove_stale_temporaries` clears).
    The result gets the usual permissions (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and flush it to disk."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_target(path) as tmp:
        write_synced(tmp, data)


def fsync_dir(directory: Path) -> None:
    """Make the renames inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the hidden temporaries that killed :func:`atomic_target` writes left in ``directory``."""
    for leftover in directory.iterdir():
        if is_temporary(leftover) and leftover.is_file():
            leftover.unlink()


def refuse_package_dir(path: Path, option: str) -> None:
    """Outputs never go into the installed package (e.g. beside a shipped checkpoint)."""
    resolved = path.resolve()
    if resolved == PACKAGE_DIR or PACKAGE_DIR in resolved.parents:
        raise RunDirError(f"{option} {path} lies inside the latentworld package; choose a folder of your own")


def check_writable(directory: Path) -> None:
    """Raise ``OSError`` unless ``directory`` (or, if it does not exist yet, its nearest existing
    parent) accepts new files. Creates nothing."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(13, "Permission denied (not writable)", str(existing))


def is_temporary(path: Path) -> bool:
    """A hidden temporary left by a killed :func:`atomic_target` write."""
    return path.name.startswith(".") and TEMP_SUFFIX in path.name


def check_output_dir(directory: Path, outputs: tuple[str, ...], option: str) -> Path:
    """Check, creating nothing, that ``directory`` may take a command's ``outputs`` (file names):
    it is new, or holds nothing but those files (an earlier or interrupted run of the same command)
    and temporaries. Anything else is refused, so no foreign file is ever replaced."""
    refuse_package_dir(directory, option)
    if directory.exists():
        if not directory.is_dir():
            raise RunDirError(f"{option} {directory} is a file, not a folder")
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in outputs and not is_temporary(p))
        if foreign:
            raise RunDirError(f"{option} {directory} already holds other files ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder")
    check_writable(directory)
    return directory
