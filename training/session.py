"""A training run's state: what :func:`training.train.setup` prepares (:class:`Session`), how far the
step loop is (:class:`Progress`, saved with every checkpoint), ``progress.json`` for an app that
watches the run, and the SIGTERM/SIGINT handling that stops the loop at the next step.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from catalog_lora.model.base_model import Precision
from catalog_lora.records.labels import Taxonomy
from catalog_lora.runs.folder import COMPLETE_MARKER, PROGRESS_FILE, RunInfo
from training.config import TrainConfig
from training.data import HeadLoss, length_grouped_batches
from training.run_folder import CHECKPOINTS
from training.schedule import Schedule

STATE_FILE = "trainer_state.json"
STOP = threading.Event()  # set by the first SIGTERM/SIGINT while the step loop runs
_IN_LOOP = threading.Event()


class TrainingStopped(RuntimeError):
    """The run was asked to stop (SIGTERM/SIGINT): its best checkpoint and a resumable state are kept."""


@dataclass
class Progress:
    """How far the loop is: saved with every checkpoint, so that a run can resume from it."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    log_history: list[dict] = field(default_factory=list)
    best: dict | None = None
    bad_evals: int = 0
    tokens: int = 0
    padded: int = 0
    samples: int = 0
    cut_by_time: bool = False
    stopped: bool = False

    def save(self, folder: Path) -> None:
        (folder / STATE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: str | Path) -> Progress:
        data = json.loads((Path(folder) / STATE_FILE).read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Session:
    """Everything :func:`training.train.setup` prepares for one run, shared by the loop and the run folder."""

    config: TrainConfig
    accelerator: Accelerator
    out: Path
    splits: dict[str, list[dict]]
    taxonomy: Taxonomy | None
    unseen: dict[str, int]
    info: RunInfo
    model: object
    tokenizer: object
    precision: Precision
    optimizer: object
    optimizer_name: str
    train_set: list
    collate: Callable
    truncated: dict[str, int]
    parameters: dict[str, int]
    started: float
    scheduler: object = None
    schedule: Schedule | None = None
    val_loader: object = None
    steps_per_epoch: int = 0
    total_steps: int = 0
    head_loss: HeadLoss | None = None
    """A head's loss beyond the model's own (class weights, auxiliary outputs); None: the model's."""
    fit_started: float = 0.0
    plan: dict = field(default_factory=dict)
    """How the run uses its device (training.plan): gradient checkpointing and why, mixed precision, batching."""
    baseline: object = None
    """The classical baseline a head's lexical vote was made of (training.tuning.fit_lexical), reused by the evaluation."""

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def log(self, text: str) -> None:
        self.accelerator.print(text)

    def loader(self, dataset: list, batches: list[list[int]]):
        # pinned batches copy to a GPU without making the host wait (non_blocking, set on the Accelerator)
        pinned = self.accelerator.device.type == "cuda"
        dl = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=self.collate, pin_memory=pinned)
        return self.accelerator.prepare_data_loader(dl)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This epoch's batches of training rows: shuffled by epoch, grouped by length."""
        lengths = [len(e.input_ids) for e in self.train_set]
        train = self.config.train
        return length_grouped_batches(lengths, train.batch_size, train.seed + epoch, train.group_by_length, train.batch_tokens)



def write_progress(session: Session, progress: Progress, phase: str) -> None:
    """``progress.json`` in the run folder, rewritten at every logged step: what an app shows while it trains."""
    if not session.main:
        return
    state = {
        "phase": phase,
        "step": progress.step,
        "total_steps": session.total_steps,
        "epoch": progress.epoch,
        "elapsed_seconds": time.time() - session.started,
        "train_seconds": time.time() - session.fit_started if session.fit_started else 0.0,
        "max_minutes": session.config.train.max_minutes or None,
        "best": progress.best,
        "cut_by_time": progress.cut_by_time,
        "log_history": progress.log_history,
    }
    partial = session.out / (PROGRESS_FILE + ".tmp")
    partial.write_text(json.dumps(state))
    partial.replace(session.out / PROGRESS_FILE)  # a reader never sees half a file


def stopped_message(session: Session, progress: Progress) -> str:
    best = progress.best
    kept = (
        f"the best checkpoint (step {best['step']}) is in {session.out / CHECKPOINTS / 'best'}"
        if best
        else "no validation had run yet, so there is no best checkpoint"
    )
    return (
        f"Stopped on request at step {progress.step} of {session.total_steps}: {kept}; resume with "
        f"train.resume_from={session.out / CHECKPOINTS / 'last'}. No run folder was written (no {COMPLETE_MARKER})."
    )


def _on_stop_signal(signum, frame) -> None:
    """The first SIGTERM/SIGINT in the step loop ends it at the next step (validated, checkpoints kept);
    outside the loop, or a second time, it stops the process at once."""
    if STOP.is_set() or not _IN_LOOP.is_set():
        raise SystemExit(128 + signum)
    STOP.set()



def catch_stop_signals() -> dict:
    """Route SIGTERM/SIGINT to :func:`_on_stop_signal` while the loop runs (main thread only); the old handlers."""
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    _IN_LOOP.set()
    return {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


def restore_signals(handlers: dict) -> None:
    _IN_LOOP.clear()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
