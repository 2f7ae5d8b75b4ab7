"""A batch prediction run in the background: progress, the finished part on disk at any time.

The Space's Batch tab starts one per upload. The run goes on when the page that started it is
closed; after every chunk of rows the rows done so far are written to a CSV, so whatever is
finished can be downloaded while the rest runs, and nothing done is lost. Runs take turns (one at a
time), since they share one model.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from catalog_lora.catalogs.batch import write_table

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_TURN = threading.Lock()  # one run at a time
_JOBS: dict[str, BatchJob] = {}
KEPT_JOBS = 50  # finished jobs beyond this many are forgotten, oldest first (their files stay on disk)


@dataclass
class BatchJob:
    """One run over ``frame`` in chunks of ``chunk_rows``.

    ``predict(chunk, report)`` returns the chunk's predictions (``report(done_units)`` may be called
    inside it); ``assemble(rows, predictions)`` turns the finished input rows and their predictions
    into the output table; ``units_per_row`` is how many predictions a row costs (one per job)."""

    frame: pd.DataFrame
    predict: Callable[[pd.DataFrame, Callable[[int], None]], pd.DataFrame]
    assemble: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]
    target: Path
    chunk_rows: int = 256
    units_per_row: int = 1
    upload: pd.DataFrame | None = None  # the table as the user gave it, when ``frame`` is a view of it
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = QUEUED
    rows_done: int = 0
    units_done: int = 0
    error: str | None = None
    result: pd.DataFrame | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def units(self) -> int:
        return self.rows * self.units_per_row

    @property
    def partial(self) -> Path:
        """The finished rows so far (the whole output once the run is done)."""
        return self.target if self.status == DONE else self.target.with_name(self.target.stem + "-partial.csv")

    @property
    def over(self) -> bool:
        return self.status in (DONE, FAILED)

    def start(self) -> BatchJob:
        finished = [job_id for job_id, job in _JOBS.items() if job.over]
        for job_id in finished[: max(0, len(finished) - KEPT_JOBS + 1)]:
            del _JOBS[job_id]
        _JOBS[self.id] = self
        threading.Thread(target=self._run, name=f"batch-{self.id}", daemon=True).start()
        return self

    def wait(self, poll: Callable[[BatchJob], None] | None = None, every: float = 0.5) -> BatchJob:
        while not self.over:
            if poll:
                poll(self)
            time.sleep(every)
        return self

    def _run(self) -> None:
        with _TURN:
            self.status, self.started = RUNNING, time.time()
            parts: list[pd.DataFrame] = []
            try:
                for start in range(0, self.rows, self.chunk_rows):
                    chunk = self.frame.iloc[start : start + self.chunk_rows]
                    base = start * self.units_per_row
                    parts.append(self.predict(chunk, lambda done, base=base: self._progress(base + done)))
                    self.rows_done = start + len(chunk)
                    self.units_done = self.rows_done * self.units_per_row
                    self._write(parts, self.partial)
                self._write(parts, self.target)
                self.status = DONE
            except Exception as error:  # the run stops; the rows finished so far stay in the partial file
                logger.exception("batch %s failed after %d rows", self.id, self.rows_done)
                self.error, self.status = f"{type(error).__name__}: {error}", FAILED
            self.finished = time.time()

    def _progress(self, units: int) -> None:
        self.units_done = min(units, self.units)

    def _write(self, parts: list[pd.DataFrame], path: Path) -> None:
        predictions = pd.concat(parts)
        self.result = self.assemble(self.frame.iloc[: len(predictions)], predictions)
        temporary = path.with_suffix(".tmp")
        write_table(self.result, temporary)
        temporary.replace(path)


def find_job(job_id: str | None) -> BatchJob | None:
    return _JOBS.get(job_id or "")
