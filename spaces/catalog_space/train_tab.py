"""The Train tab's handlers: a catalog and its column mapping checked and previewed, a job started,
watched (progress, ETA, loss curve, validation), cancelled, discarded or published.

The job itself is :mod:`training_jobs`; a finished job's adapter joins the Space's pool
(:meth:`models.Models.add`), so the other tabs offer it at once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import gradio as gr
import pandas as pd

from catalog_lora.records.canonical import SPACE_SLOTS
from catalog_lora.runs.folder import check_repo_id
from catalog_lora.runs.markdown import below_baseline, metrics_table
from catalog_space import about, train_requests, training_jobs
from catalog_space.about import metrics_on_test
from catalog_space.batch_runs import PREVIEW_ROWS, file_path, text_column_of
from catalog_space.models import Models
from catalog_space.settings import JOB_LABELS, REPO_DIR
from catalog_space.train_requests import TrainInputError, TrainRequest

logger = logging.getLogger("catalog_lora.space")

POLL_SECONDS = 2.0
TASK_CHOICES = [("Tags", "tagging"), ("Category", "category"), ("Description", "description")]


def availability(models: Models) -> str:
    """Why the tab is off, or ``""``."""
    if not models.settings.train_tab:
        return (
            "⚠️ **Training is switched off here.** On a public Space it is off unless its owner sets "
            "`CATALOG_LORA_TRAIN_TAB=1` (or `train_tab: true` in adapters.yaml)."
        )
    if not (REPO_DIR / "training" / "train.py").is_file() or not (REPO_DIR / "datasets_prep").is_dir():
        return "⚠️ **Training is not installed here:** this copy of the app has no `training/` and `datasets_prep/`."
    return ""


def request_of(task, text_column, targets, separator, attributes, method, minutes, epochs, samples, name, dataset=""):
    """The tab's fields as a :class:`TrainRequest` (Gradio hands numbers as floats and lists as lists or None)."""
    return TrainRequest(
        task=task or "tagging",
        text_column=text_column or "",
        target_columns=[targets] if isinstance(targets, str) else list(targets or []),
        label_separator=separator or "",
        attribute_columns=list(attributes or []),
        dataset=dataset or "",
        method=method or "generate",
        max_minutes=float(minutes or 0),
        epochs=float(epochs or 0),
        max_samples=int(samples or 0),
        name=(name or "").strip(),
    )


def read_training_file(models: Models, file) -> pd.DataFrame:
    """The uploaded catalog within the upload limits, or :class:`TrainInputError`."""
    path = file_path(file)
    size = os.path.getsize(path)
    if size > models.settings.max_file_bytes:
        raise TrainInputError(
            f"the file is {size / 1024 / 1024:.1f} MB; uploads are limited to {models.settings.max_file_size_mb:g} MB"
        )
    return train_requests.read_catalog(path)


def inspect_training_file(models: Models, file):
    """On upload: ``(text column, target columns, attribute columns, preview, notice)``."""
    empty = gr.Dropdown(choices=[], value=None)
    if file is None:
        return empty, gr.Dropdown(choices=[], value=[]), gr.Dropdown(choices=[], value=[]), None, ""
    try:
        frame = read_training_file(models, file)
    except (TrainInputError, OSError) as error:
        note = f"**This file cannot be used:** {error}"
        return empty, gr.Dropdown(choices=[], value=[]), gr.Dropdown(choices=[], value=[]), None, note
    columns = [str(c) for c in frame.columns]
    notice = f"{len(frame):,} rows and {len(columns)} columns. Map the text column and the answer column(s)."
    return (
        gr.Dropdown(choices=columns, value=text_column_of(columns)),
        gr.Dropdown(choices=columns, value=[]),
        gr.Dropdown(choices=columns, value=[]),
        frame.head(PREVIEW_ROWS),
        notice,
    )


def preview_mapping(models: Models, file, dataset, *fields):
    """``(parsed rows, label counts, notice, Start button)`` for the current file (or dataset) and mapping."""
    off = gr.Button(interactive=False)
    request = request_of(*fields, dataset=dataset)
    parsed = counts = None
    try:
        if file is None:
            train_requests.check_request(request, None, models.settings.max_train_rows)
            return (
                None,
                None,
                f"Prepared dataset `{request.dataset}` ({request.task}). Press **Start**.",
                _start(models),
            )
        frame = read_training_file(models, file)
        parsed, counts = parsed_preview(frame, request)
        train_requests.check_request(request, frame, models.settings.max_train_rows)
    except (TrainInputError, OSError) as error:
        return parsed, counts, f"**Before training:** {error}.", off
    classes = f", {len(counts)} labels" if counts is not None else ""
    return parsed, counts, f"{len(frame):,} rows{classes}. Press **Start**.", _start(models)


def parsed_preview(frame: pd.DataFrame, request: TrainRequest):
    """``(first rows as answer and text, label counts)`` once the mapped columns are in the file, else ``(None, None)``."""
    mapped = [request.text_column, *request.target_columns]
    if not request.target_columns or not all(column in frame.columns for column in mapped):
        return None, None
    answers = train_requests.targets_of(frame, request)
    parsed = pd.DataFrame({"answer": answers, "text": frame[request.text_column].astype(str)}).head(PREVIEW_ROWS)
    return parsed, train_requests.label_counts(frame, request) if request.task != "description" else None


def _start(models: Models):
    return gr.Button(interactive=not availability(models) and training_jobs.running_job() is None)


def launch_training(models: Models, file, dataset, *fields) -> training_jobs.TrainJob:
    """Check everything, then start the job; :class:`TrainInputError` says what to change."""
    problem = availability(models)
    if problem:
        raise TrainInputError(problem.replace("⚠️ ", "").replace("**", ""))
    request = request_of(*fields, dataset=dataset)
    path = file_path(file) if file is not None else None
    if path is not None:
        read_training_file(models, file)  # the size limit
    settings = models.settings

    def adopt(job: training_jobs.TrainJob) -> str:
        label = f"{request.name or (job.upload.stem if job.upload else request.dataset)} (trained here)"
        return models.add(f"trained-{job.id}", str(job.run_dir), label).name

    return training_jobs.start_job(
        request,
        path,
        settings.jobs_root,
        settings.max_train_rows,
        on_done=adopt,
        eval_examples=settings.train_eval_examples,
        eval_every=settings.train_eval_every,
    )


def start_training(models: Models, file, dataset, *fields):
    """The Start button: ``(job id, timer, notice)``."""
    try:
        job = launch_training(models, file, dataset, *fields)
    except (TrainInputError, OSError) as error:
        return gr.skip(), gr.Timer(active=False), f"**Not started:** {error}"
    return job.id, gr.Timer(active=True), f"Job `{job.id}` started: {job.status}…"


def train(
    models: Models,
    file,
    dataset: str,
    task: str,
    text_column: str,
    targets: list[str],
    separator: str,
    attributes: list[str],
    method: str,
    minutes: float,
    epochs: float,
    samples: int,
    name: str,
):
    """Start a training job (the API's ``/train``); returns its id. Poll ``/train_status`` with it."""
    fields = (task, text_column, targets, separator, attributes, method, minutes, epochs, samples, name)
    try:
        return launch_training(models, file, dataset, *fields).id
    except (TrainInputError, OSError) as error:
        raise gr.Error(str(error), duration=None, print_exception=False) from None


def job_summary(job_id: str) -> dict:
    """The job's state for the API (``/train_status``): status, step, ETA, losses, validation, adapter, error."""
    job = training_jobs.find_train_job(job_id)
    if job is None:
        raise gr.Error(f"no training job {job_id!r} (it was discarded, or the app restarted)", print_exception=False)
    return job.summary()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def progress_html(summary: dict) -> str:
    step, total = summary["step"], summary["total_steps"]
    eta = f" · about {duration(summary['eta_seconds'])} left" if summary["status"] == training_jobs.TRAINING else ""
    bar = f'<progress value="{step}" max="{max(1, total)}" style="width:100%"></progress>' if total else ""
    return f"{bar}<div>{summary['status'].capitalize()} · step {step} of {total or '?'}{eta}</div>"


def loss_frame(summary: dict) -> pd.DataFrame:
    rows = [(e["step"], e["loss"], "training") for e in summary["losses"]]
    rows += [(e["step"], e["eval_loss"], "validation") for e in summary["validation"]]
    return pd.DataFrame(rows, columns=["step", "loss", "series"]).astype({"step": int, "loss": float, "series": str})


def validation_frame(summary: dict) -> pd.DataFrame:
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in e.items()} for e in summary["validation"]]
    return pd.DataFrame(rows)


def status_notice(models: Models, job: training_jobs.TrainJob) -> str:
    if job.status == training_jobs.FAILED:
        return f"**Training failed:** {job.error}\n\nThe app and its other adapters are unchanged."
    if job.status == training_jobs.CANCELLED:
        best = job.progress().get("best")
        kept = f"its best checkpoint (step {best['step']}) is kept" if best else "no validation had run, no checkpoint"
        return f"**Cancelled** at step {job.progress().get('step', 0)}: {kept} until you discard the job."
    if job.status != training_jobs.DONE:
        return f"Job `{job.id}`: {job.status}… (training runs in its own process; the other tabs keep working)"
    slot = models.slots.get(job.adapter or "")
    if slot is None:
        return "**Done**, but the adapter could not be loaded into the app."
    values = metrics_on_test(slot)
    table = metrics_table(values, slot.task) if "adapter" in values else "No test metrics."
    warning = below_baseline(values, slot.task)
    # choose_threshold keeps 0 when no cut of the confidences sorts right from wrong answers better than none
    never_flags = slot.info is not None and slot.info.review_threshold == 0.0
    return (
        f"**Done:** the adapter **{slot.label}** is now offered in the {JOB_LABELS[SPACE_SLOTS[slot.task]]} tab, "
        f"Compare and Batch upload."
        + (f"\n\n**Weaker than the baseline.** {warning}" if warning else "")
        + ("\n\n**Nothing will be flagged for review.** On the validation split its confidences did not tell its "
           "right answers from its wrong ones, so its review threshold is 0%: check its answers yourself." if never_flags else "")
        + f"\n\nTest split, base model vs adapter vs TF-IDF baseline:\n\n{table}"
    )


def training_status(models: Models, job_id: str | None):
    """A job's ``(progress, notice, loss curve, validation table, timer, adapters)``; the timer stops once it is over."""
    job = training_jobs.find_train_job(job_id)
    if job is None:
        return "", gr.skip(), None, None, gr.Timer(active=False), len(models.slots)
    summary = job.summary()
    losses = loss_frame(summary)
    return (
        progress_html(summary),
        status_notice(models, job),
        losses if len(losses) else gr.skip(),  # the plot draws no line if its first frame was empty
        validation_frame(summary),
        gr.Timer(active=not job.over),
        len(models.slots),
    )


def cancel_training(job_id: str | None) -> str:
    job = training_jobs.find_train_job(job_id)
    if job is None or job.over:
        return "No running job to cancel."
    job.cancel()
    return "Cancelling: training stops at the next step and keeps its best checkpoint…"


def discard_training(models: Models, job_id: str | None):
    """Discard the job: stop it, take its adapter out of the app, delete its folder. ``(job id, notice, adapters)``."""
    job = training_jobs.find_train_job(job_id)
    if job is None:
        return None, "No job to discard.", len(models.slots)
    if job.adapter:
        models.remove(job.adapter)
    job.discard()
    return None, f"Job `{job.id}` discarded: its files are deleted.", len(models.slots)


def publish_trained(job_id: str | None, repo_id: str, token: str):
    """Publish the job's run folder with ``python -m model_cards.publish`` (the same card and upload).

    The token goes to that one process in its environment: it is never stored, logged or shown.
    Returns ``(notice, "")``: the token field is emptied."""
    return publish_notice(job_id, repo_id, (token or "").strip()), ""


def publish_notice(job_id: str | None, repo_id: str, token: str) -> str:
    job = training_jobs.find_train_job(job_id)
    if job is None or job.status != training_jobs.DONE:
        return "**Nothing to publish:** train an adapter first (the job must be done)."
    repo_id = (repo_id or "").strip()
    try:
        check_repo_id(repo_id)
    except ValueError as error:
        return f"**Not published:** {error}"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    if token:
        env["HF_TOKEN"] = token
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "model_cards.publish", str(job.run_dir), "--repo-id", repo_id]
    done = subprocess.run(command, cwd=REPO_DIR, env=env, capture_output=True, text=True)
    output = (done.stdout + done.stderr).strip()
    if token:
        output = output.replace(token, "***")
    if done.returncode != 0:
        logger.info("publishing %s failed (exit status %s)", repo_id, done.returncode)
        return f"**Not published:** {output.splitlines()[-1] if output else f'exit status {done.returncode}'}"
    return f"**Published** to `{repo_id}`.\n\n```\n{output[-1500:]}\n```"


def adapter_choices(models: Models, task: str) -> list[tuple[str, str]]:
    return [(slot.label, name) for name, slot in models.slots.items() if slot.task == task and models.available(name)]


def picked_adapter(models: Models, name: str) -> str | None:
    """A tab's adapter when the page opens: the Space's own, else the first one trained here, else none."""
    if models.available(name):
        return name
    choices = adapter_choices(models, models.slots[name].task)
    return choices[0][1] if choices else None


def refreshed_choices(models: Models, _version=None):
    """The other tabs with any adapter trained here since the page was built: ``(Tag, Classify,
    Describe pickers, their three notices, Compare, Dataset, Batch jobs)``."""
    every = [(slot.label, name) for name, slot in models.slots.items()]
    available = [(slot.label, name) for name, slot in models.slots.items() if models.available(name)]
    own = ("tag", "category", "describe")
    pickers = [
        gr.Dropdown(choices=adapter_choices(models, models.slots[n].task), value=picked_adapter(models, n)) for n in own
    ]
    notices = [about.availability(models, n) for n in own]
    return (*pickers, *notices, gr.Radio(choices=every), gr.Radio(choices=every), gr.CheckboxGroup(choices=available))
