"""Benchmark jobs as child processes, each one's CPU time booked in a ledger that survives interruptions.

Shared by the benchmark scripts (``bench_baselines.py``, ``bench_reacher.py``): each training or
evaluation runs as its own process (so a crash or Ctrl-C leaves the others and the ledger intact),
its output appended to a log file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from latentworld.common.fileio import atomic_write_bytes


class CpuLedger:
    """CPU seconds (user + system) of every child process per run, summed over resumes, kept in a
    JSON file so an interrupted benchmark still reports the whole cost."""

    def __init__(self, path: Path) -> None:
        self.path, self.lock = path, threading.Lock()
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def add(self, key: str, seconds: float) -> None:
        with self.lock:
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds
            atomic_write_bytes(self.path, json.dumps(self.seconds, indent=2).encode())


def run_child(command: list[str], log: Path, ledger: CpuLedger, key: str) -> None:
    """Run ``command``, appending its output to ``log``, and book its CPU time."""
    with log.open("a") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    ledger.add(key, usage.ru_utime + usage.ru_stime)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {process.returncode}; see {log}")


def run_jobs(jobs: list[Callable[[], None]], workers: int, unit: str) -> list[str]:
    """Run ``jobs`` (each one or more :func:`run_child` calls) ``workers`` at a time, with a progress bar.

    A job that fails (``RuntimeError``) is reported and the others go on; Ctrl-C reaches the running
    children and starts no queued job.

    Returns:
        The failures' messages.
    """
    failures: list[str] = []
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(jobs), desc=f"{unit}s", unit=unit) as bar:
        futures = [pool.submit(job) for job in jobs]
        try:
            for future in as_completed(futures):
                try:
                    future.result()
                except RuntimeError as err:
                    failures.append(str(err))
                    print(f"[bench] {err}", file=sys.stderr)
                bar.update()
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return failures
