"""The Train tab's backend: one fine-tuning job at a time, each in a folder of its own, run as processes.

A job prepares the catalog with ``python -m datasets_prep.prepare --format generic`` (or takes a
prepared dataset folder), writes ``config.yaml`` from the task's sample config and the chosen
budget, and runs ``python -m training.train --config config.yaml``. The app imports neither
package (ARCHITECTURE.md): both are separate processes, so a crash of the job never takes the app
down. While training runs, the run folder's ``progress.json`` (written by ``training.train``)
gives the step, the losses and the phase; a finished run (``COMPLETE``) becomes an adapter of the
Space. Cancel sends SIGTERM: training validates, keeps its best checkpoint and stops.
Discarding a job deletes its folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from catalog_lora.records.dataset_files import load_split
from catalog_lora.runs.folder import COMPLETE_MARKER, PROGRESS_FILE, TAXONOMY_FILE
from catalog_space.settings import REPO_DIR
from catalog_space.train_requests import (
    BATCH_SIZE,
    MIN_ROWS,
    TrainInputError,
    TrainRequest,
    check_request,
    dataset_folder,
    read_catalog,
)

logger = logging.getLogger("catalog_lora.space")

CANCEL_GRACE_SECONDS = 60  # after SIGTERM, training validates and saves; then it is killed
CHOICE_CANDIDATES = 5  # a description head (method head) chooses among this many nearest training descriptions
QUEUED, PREPARING, LOADING, TRAINING = "queued", "preparing data", "loading the model", "training"
EVALUATING, DONE, FAILED, CANCELLED = "evaluating on the test split", "done", "failed", "cancelled"
OVER = (DONE, FAILED, CANCELLED)
_JOBS: dict[str, TrainJob] = {}
_TURN = threading.Lock()  # one job trains at a time


@dataclass
class TrainJob:
    """One fine-tuning job: its folder, its processes, where it is."""

    request: TrainRequest
    folder: Path
    upload: Path | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = QUEUED
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    adapter: str | None = None  # the Space's name of the finished adapter
    cancel_requested: float | None = None
    eval_examples: int = 100  # validation and test rows at most (evaluation is part of the job's time)
    eval_every: int = 10  # steps between validations, each keeping the best checkpoint so far
    process: subprocess.Popen | None = field(default=None, repr=False)
    on_done: object = field(default=None, repr=False)  # (job) -> the adapter's name in the Space

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def data_dir(self) -> Path:
        return dataset_folder(self.request.dataset) if self.request.dataset else self.folder / "data"

    @property
    def log_path(self) -> Path:
        return self.folder / "job.log"

    @property
    def over(self) -> bool:
        return self.status in OVER

    def progress(self) -> dict:
        """``progress.json`` of the run (step, total steps, losses, phase) or ``{}`` before the first write."""
        try:
            return json.loads((self.run_dir / PROGRESS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> TrainJob:
        if not _TURN.acquire(blocking=False):
            running = next((job for job in _JOBS.values() if not job.over), None)
            raise TrainInputError(
                f"a training job is already running ({running.id if running else 'finishing'}); "
                "wait for it or cancel it, then start again"
            )
        _JOBS[self.id] = self
        threading.Thread(target=self._run, name=f"train-{self.id}", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            if self.upload is not None:
                self.status = PREPARING
                self._step(prepare_command(self), "preparing the data")
                check_prepared(self.data_dir, self.request)
            self.status = LOADING
            write_config(self)
            self._step(
                [sys.executable, "-m", "training.train", "--config", str(self.folder / "config.yaml")], "training"
            )
            if not (self.run_dir / COMPLETE_MARKER).is_file():
                raise RuntimeError(f"training ended without a finished run folder (no {COMPLETE_MARKER})")
            if self.on_done is not None:  # the adapter joins the app before the job says it is done
                self.adapter = self.on_done(self)
            self.status = DONE
        except Exception as error:
            if self.cancel_requested:
                self.status = CANCELLED
            else:
                self.status, self.error = FAILED, str(error)
                logger.warning("training job %s failed: %s", self.id, error)
        finally:
            self.finished = time.time()
            _TURN.release()

    def _step(self, command: list[str], what: str) -> None:
        """Run one process of the job (its output into ``job.log``); raise with its last lines when it fails."""
        if self.cancel_requested:
            raise RuntimeError("cancelled")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get("PYTHONPATH")]))}
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            self.process = subprocess.Popen(command, cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
            while self.process.poll() is None:
                if self.status == LOADING and self.progress().get("phase") == "training":
                    self.status = TRAINING
                if self.status == TRAINING and self.progress().get("phase") == "evaluating":
                    self.status = EVALUATING
                if self.cancel_requested and time.time() - self.cancel_requested > CANCEL_GRACE_SECONDS:
                    self.process.kill()
                time.sleep(0.5)
        if self.process.returncode != 0:
            raise RuntimeError(f"{what} failed (exit status {self.process.returncode}):\n{self.log_tail()}")

    def cancel(self) -> None:
        """Stop the job: SIGTERM to its process (training then validates, keeps its best checkpoint and exits)."""
        if self.over or self.cancel_requested:
            return
        self.cancel_requested = time.time()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def discard(self) -> None:
        """Cancel the job if it runs, forget it and delete its folder (the prepared data and the run)."""
        self.cancel()
        if self.process is not None:
            try:
                self.process.wait(CANCEL_GRACE_SECONDS + 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        _JOBS.pop(self.id, None)
        shutil.rmtree(self.folder, ignore_errors=True)

    def summary(self) -> dict:
        """The job as the API returns it: status, step, ETA, losses, validation entries, error."""
        state = self.progress()
        history = state.get("log_history", [])
        return {
            "id": self.id,
            "status": self.status,
            "task": self.request.task,
            "step": state.get("step", 0),
            "total_steps": state.get("total_steps", 0),
            "eta_seconds": eta_seconds(state) if self.status == TRAINING else None,
            "elapsed_seconds": round((self.finished or time.time()) - self.started, 1),
            "losses": [e for e in history if "loss" in e],
            "validation": [e for e in history if "eval_loss" in e],
            "adapter": self.adapter,
            "error": self.error,
            "request": asdict(self.request),
        }


def eta_seconds(state: dict) -> float | None:
    """Seconds left: the remaining steps at the pace so far, or the time budget left if that ends first."""
    step, total, seconds = state.get("step", 0), state.get("total_steps", 0), state.get("train_seconds", 0.0)
    if not step or not total:
        return None
    left = (total - step) * seconds / step
    if state.get("max_minutes"):
        left = min(left, max(0.0, 60 * state["max_minutes"] - seconds))
    return round(left, 1)


def prepare_command(job: TrainJob) -> list[str]:
    """``python -m datasets_prep.prepare --format generic`` with the request's column mapping."""
    request = job.request
    command = [
        sys.executable,
        "-m",
        "datasets_prep.prepare",
        "--format",
        "generic",
        "--task",
        request.task,
        "--input",
        str(job.upload),
        "--output",
        str(job.folder / "data"),
        "--text-column",
        request.text_column,
        "--name",
        request.name or job.upload.stem,
    ]
    flag = {"tagging": "--label-column", "category": "--path-column", "description": "--description-column"}
    for column in request.target_columns if request.task != "description" else request.target_columns[:1]:
        command += [flag[request.task], column]
    if request.task == "tagging" and request.label_separator:
        command += ["--label-separator", request.label_separator]
    for column in request.attribute_columns:  # shown beside the text, for every task (a category's brand)
        command += ["--attribute-column", column]
    return command


def check_prepared(folder: Path, request: TrainRequest) -> None:
    """The prepared folder can train: every split has rows, and labels have at least two classes."""
    for split in ("train", "validation", "test"):
        if not load_split(folder, split):
            raise TrainInputError(
                f"after cleaning, the {split} split is empty: the file has too few usable rows (after merging "
                f"repeated texts); give at least {MIN_ROWS} distinct products"
            )
    if request.task != "description":
        labels = json.loads((folder / TAXONOMY_FILE).read_text(encoding="utf-8")).get("labels", [])
        if len(labels) < 2:
            raise TrainInputError("after cleaning, the training split has fewer than 2 labels: nothing to tell apart")


def write_config(job: TrainJob) -> Path:
    """``config.yaml`` of the job: the task's sample config with this data, this folder and this budget."""
    request = job.request
    config = yaml.safe_load((REPO_DIR / "training" / "configs" / f"sample_{request.task}.yaml").read_text()) or {}
    config.update(task=request.task, method=request.method, output_dir=str(job.run_dir))
    if request.method == "head" and request.task == "description":  # it chooses among the nearest training descriptions
        config.update(references=True)
        # answering among the TF-IDF search's candidates pooled with the index's, as the shipped config does
        config.setdefault("model", {}).update(prompt_examples=CHOICE_CANDIDATES, choice_search="pooled")
    config.setdefault("data", {}).update(path=str(job.data_dir), max_train_examples=int(request.max_samples))
    config["data"].update(max_eval_examples=job.eval_examples)
    train = config.setdefault("train", {})
    train.update(epochs=float(request.epochs), max_minutes=float(request.max_minutes), batch_size=BATCH_SIZE)
    train.update(logging_steps=1, eval_every=job.eval_every)
    path = job.folder / "config.yaml"
    path.write_text(
        "# Written by the Space's Train tab; run it again with python -m training.train --config <this file>\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    return path


def start_job(
    request: TrainRequest,
    upload: str | None,
    root: Path,
    max_rows: int,
    on_done=None,
    eval_examples: int = 100,
    eval_every: int = 10,
) -> TrainJob:
    """Check the request, copy the upload into a new job folder under ``root`` and start the job."""
    frame = None
    if upload:
        frame = read_catalog(upload)
    check_request(request, frame, max_rows)
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    copy = None
    if upload:
        copy = folder / Path(upload).name
        shutil.copyfile(upload, copy)
    job = TrainJob(request, folder, copy, on_done=on_done, eval_examples=eval_examples, eval_every=eval_every)
    try:
        return job.start()
    except TrainInputError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def find_train_job(job_id: str | None) -> TrainJob | None:
    return _JOBS.get(job_id or "")


def running_job() -> TrainJob | None:
    return next((job for job in _JOBS.values() if not job.over), None)
