"""A batch output written chunk by chunk: resumable after a crash, shared by several processes.

Each finished chunk of predictions is saved as its own file under ``<output>.parts/`` (written
to a temporary name, then renamed, so a file there is always complete). The main process
appends the finished chunks to ``<output>`` in input order as soon as they are contiguous and
records in ``manifest.json`` how many chunks and bytes the output holds. Rerunning the same
job continues from there; a job whose input, adapters or settings changed is refused
(:class:`ResumeError`) instead of being resumed into a mixed file. When every chunk is in the
output, the parts folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from catalog_lora.catalogs.batch import escape_cell, escape_formulas
from catalog_lora.catalogs.tables import ERROR_COLUMN, HASH_BLOCK, BatchInputError
from catalog_lora.runs.folder import INFO_FILE

PARTS_SUFFIX = ".parts"
MANIFEST = "manifest.json"
# The files of a local adapter folder that decide its predictions.
ADAPTER_FINGERPRINT_FILES = ("adapter_config.json", "adapter_model.safetensors", INFO_FILE, "taxonomy.json")


class ResumeError(BatchInputError):
    """An unfinished job of another input, adapter or settings is in the way; the message says what to do."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def adapter_fingerprint(source: str) -> str:
    """A local adapter folder by the content of its files; a Hub id by its name."""
    folder = Path(source)
    if not folder.is_dir():
        return source
    digest = hashlib.sha256()
    for name in ADAPTER_FINGERPRINT_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + file_sha256(folder / name).encode())
    return digest.hexdigest()


@dataclass
class JobState:
    """``manifest.json``: what the job is, and how much of it the output already holds."""

    fingerprint: dict  # {"input": sha256, "adapters": {name: fingerprint}, "settings": {...}}
    chunks_written: int = 0  # chunks appended to the output, in input order
    output_bytes: int = 0  # size of the output after the last appended chunk (a partial append is cut off)
    rows: int = 0  # rows in the output
    errors: int = 0  # of which rows with an error
    done: list[int] = field(default_factory=list)  # not in the manifest: chunks saved, not yet appended


@dataclass
class ChunkedOutput:
    """The output file of a batch job and its ``.parts`` folder."""

    output: Path
    fingerprint: dict
    state: JobState | None = None

    @property
    def parts(self) -> Path:
        return self.output.with_name(self.output.name + PARTS_SUFFIX)

    def _chunk(self, index: int, suffix: str = ".csv") -> Path:
        return self.parts / f"{index:09d}{suffix}"

    def load(self) -> JobState | None:
        """The unfinished job's state, or ``None`` when there is none; refuses one of another job."""
        manifest = self.parts / MANIFEST
        if not manifest.is_file():
            return None
        state = JobState(**json.loads(manifest.read_text()))
        changed = [key for key in self.fingerprint if state.fingerprint.get(key) != self.fingerprint[key]]
        if changed:
            raise ResumeError(
                f"{self.output} belongs to an unfinished run with a different {' and '.join(changed)} "
                f"({state.rows:,} rows written); rerun it with the same input, adapters and settings to resume, "
                f"or delete {self.output} and {self.parts} to start over"
            )
        state.done = sorted(int(p.stem) for p in self.parts.glob("*.csv"))
        self.state = state
        return state

    def start(self, header: list[str]) -> JobState:
        """Main process: resume the job in place, or start a new output with its header."""
        state = self.load()
        if state is None:
            shutil.rmtree(self.parts, ignore_errors=True)
            self.parts.mkdir(parents=True)
            header = [escape_cell(str(c)) for c in header]
            self.output.write_text(pd.DataFrame(columns=header).to_csv(index=False), encoding="utf-8")
            state = JobState(self.fingerprint, output_bytes=self.output.stat().st_size)
            self.state = state
            self._save_state()
            return state
        size = self.output.stat().st_size if self.output.is_file() else -1
        if size < state.output_bytes:
            raise ResumeError(
                f"{self.output} is shorter than its {state.chunks_written} finished chunks; it was changed since. "
                f"Delete {self.output} and {self.parts} to start over"
            )
        with self.output.open("r+b") as file:
            file.truncate(state.output_bytes)  # a chunk being appended when the run stopped
        return state

    def _save_state(self) -> None:
        data = {k: v for k, v in asdict(self.state).items() if k != "done"}
        tmp = self.parts / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.parts / MANIFEST)

    def save(self, index: int, frame: pd.DataFrame) -> None:
        """Keep a finished chunk under its index, formula-safe; complete or absent, never half."""
        stats = {"rows": len(frame), "errors": int((frame[ERROR_COLUMN] != "").sum())}
        self._chunk(index, ".json").write_text(json.dumps(stats))
        tmp = self._chunk(index, ".tmp")
        escape_formulas(frame).to_csv(tmp, index=False, header=False)
        os.replace(tmp, self._chunk(index))

    def _stats(self, index: int) -> dict:
        return json.loads(self._chunk(index, ".json").read_text())

    def append_ready(self) -> None:
        """Main process: append every saved chunk that is next in input order, then forget it."""
        state = self.state
        while self._chunk(state.chunks_written).is_file():
            index = state.chunks_written
            stats = self._stats(index)
            with self.output.open("ab") as out, self._chunk(index).open("rb") as part:
                shutil.copyfileobj(part, out)
                out.flush()
                os.fsync(out.fileno())
                state.output_bytes = out.tell()
            state.chunks_written += 1
            state.rows += stats["rows"]
            state.errors += stats["errors"]
            self._save_state()
            self._chunk(index).unlink()
            self._chunk(index, ".json").unlink()

    def rows_done(self) -> int:
        """Rows in the output plus rows in chunks saved by any process and not yet appended."""
        pending = [int(p.stem) for p in self.parts.glob("*.csv")]
        return self.state.rows + sum(self._stats(i)["rows"] for i in pending if i >= self.state.chunks_written)

    def finish(self, chunks: int) -> JobState:
        """Main process, after every process is done: append the rest and remove the parts folder."""
        self.append_ready()
        if self.state.chunks_written != chunks:
            raise RuntimeError(
                f"only {self.state.chunks_written} of {chunks} chunks are in {self.output}; rerun the same command to "
                "finish the missing ones"
            )
        shutil.rmtree(self.parts)
        return self.state
