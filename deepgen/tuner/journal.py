"""The run journal: one JSON line per finished step, appended and fsynced, read back on resume.

Records carry "stage" ("compile", "bench" or "baseline") and "id" (the candidate) or "shape".
A run killed mid-write leaves at most one torn last line; reading skips it (that candidate is
simply redone). Nothing is ever rewritten in place, so a reader never sees a half state.
Imports neither MLIR nor torch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from deepgen.runtime.artifact import atomic_write

JOURNAL = "journal.jsonl"


class Journal:
    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / JOURNAL
        self._file = None

    def append(self, record: dict) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")
            if self._file.tell() > 0:  # end a torn last line, so it does not swallow ours
                self._file.seek(-1, os.SEEK_END)
                if self._file.read(1) != b"\n":
                    self._file.write(b"\n")
        self._file.write((json.dumps(record, sort_keys=True) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())  # a finished candidate survives a crash right after

    def records(self) -> list[dict]:
        return read_journal(self.path.parent)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_journal(directory: str | os.PathLike) -> list[dict]:
    """Every complete record of the journal in `directory` ([] when there is none)."""
    path = Path(directory) / JOURNAL
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the torn last line of a killed run
        if isinstance(rec, dict):
            out.append(rec)
    return out


def latest(records: list[dict], stage: str) -> dict[str, dict]:
    """The last record of `stage` per candidate id (a resumed run may redo a torn one)."""
    return {r["id"]: r for r in records if r.get("stage") == stage and "id" in r}


def write_json(path: str | os.PathLike, value) -> None:
    """Write JSON atomically (temp file + os.replace): readers see the old or the new file."""
    atomic_write(path, (json.dumps(value, indent=1, sort_keys=False) + "\n").encode())
