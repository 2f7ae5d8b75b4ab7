"""The Space's Train tab: bad input refused before anything runs, then a real job through the API.

The job is the real thing: ``python -m datasets_prep.prepare`` and ``python -m training.train`` as
processes on the embedded base model, with a one-step budget, evaluated on a few test rows;
the finished adapter then answers ``/tag`` in the same running app.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from test_space import launch_space

from catalog_lora.records.dataset_files import load_taxonomy
from catalog_lora.runs.folder import COMPLETE_MARKER, PROGRESS_FILE
from catalog_space import about, train_requests, train_tab, training_jobs
from catalog_space.settings import read_settings
from catalog_space.train_requests import TrainInputError, TrainRequest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_TAGS = REPO / "datasets_prep" / "sample" / "tagging.csv"
JOB_SECONDS = 300  # a one-step job takes about a minute on one free core; the CPU may be shared


def catalog(path: Path, rows: int = 60) -> Path:
    """The first ``rows`` reviews of the sample catalog (real format: ``text,tags`` with ``|`` between tags)."""
    with SAMPLE_TAGS.open(encoding="utf-8") as source, path.open("w", encoding="utf-8", newline="") as target:
        writer = csv.writer(target)
        for i, row in enumerate(csv.reader(source)):
            if i > rows:
                break
            writer.writerow(row)
    return path


def frame_of(path: Path) -> pd.DataFrame:
    return train_requests.read_catalog(str(path))


def tags_request(**changes) -> TrainRequest:
    fields = dict(task="tagging", text_column="text", target_columns=["tags"], label_separator="|")
    return TrainRequest(**{**fields, **changes})


# --------------------------------------------------------------------------- refused before training starts


def test_a_usable_catalog_passes_and_is_counted(tmp_path):
    frame = frame_of(catalog(tmp_path / "reviews.csv"))
    train_requests.check_request(tags_request(), frame, 5000)
    counts = train_requests.label_counts(frame, tags_request())
    assert counts["rows"].is_monotonic_decreasing and len(counts) >= 2
    assert counts["rows"].sum() >= len(frame), "a review with two tags counts for both"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(target_columns=[]), "choose the label column"),
        (dict(target_columns=["empty"]), "no usable label column"),
        (dict(target_columns=["one"]), "one class (Price)"),
        (dict(max_minutes=0.1), "too small to train one step"),
        (dict(max_samples=3), "needs 8 rows"),
        (dict(epochs=0), "positive number of passes"),
        (dict(task="summaries"), "not one of tagging, category, description"),
    ],
)
def test_bad_input_is_refused_with_what_would_work(tmp_path, change, message):
    frame = frame_of(catalog(tmp_path / "reviews.csv")).assign(empty="", one="Price")
    with pytest.raises(TrainInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_requests.check_request(tags_request(**change), frame, 5000)


@pytest.mark.parametrize("method", ["generate", "head"])
def test_the_job_config_is_one_training_accepts(tmp_path, method):
    """The job's config.yaml for every task and method passes training's own checks; a description head
    chooses among its nearest training descriptions."""
    from training.config import load_config

    for task in train_requests.TASKS:
        request = tags_request(task=task, method=method)
        job = training_jobs.TrainJob(request, tmp_path / f"{task}-{method}")
        job.folder.mkdir()
        config = load_config(training_jobs.write_config(job))
        assert (config.task, config.method, config.train.max_minutes) == (task, method, request.max_minutes)
        if (task, method) == ("description", "head"):
            assert config.references and config.model.prompt_examples == training_jobs.CHOICE_CANDIDATES
            assert config.model.choice_search == "pooled", "as the shipped config: TF-IDF candidates pooled with the index's"


def test_too_few_rows_and_too_many_rows_are_refused(tmp_path):
    small = frame_of(catalog(tmp_path / "small.csv", rows=12))
    with pytest.raises(TrainInputError, match="only 12 rows .* at least 30"):
        train_requests.check_request(tags_request(), small, 5000)
    with pytest.raises(TrainInputError, match="60 rows; training from this app takes at most 50"):
        train_requests.check_request(tags_request(), frame_of(catalog(tmp_path / "big.csv")), 50)


def test_the_train_tab_is_off_on_a_public_space_unless_turned_on(tmp_path):
    assert read_settings(tmp_path / "none.yaml", environ={}).train_tab is True
    assert read_settings(tmp_path / "none.yaml", environ={"SPACE_ID": "you/space"}).train_tab is False
    on = {"SPACE_ID": "you/space", "CATALOG_LORA_TRAIN_TAB": "1"}
    assert read_settings(tmp_path / "none.yaml", environ=on).train_tab is True
    with pytest.raises(ValueError, match="train_tab=.maybe. is not a yes/no value"):
        read_settings(tmp_path / "none.yaml", environ={"CATALOG_LORA_TRAIN_TAB": "maybe"})


# --------------------------------------------------------------------------- a real job through the API


@pytest.fixture(scope="module")
def client(tiny_runs, tmp_path_factory):
    from gradio_client import Client

    _, url = launch_space(tiny_runs)
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path_factory.mktemp("dl")))


def wait_for(client, job_id: str, seconds: float = JOB_SECONDS) -> dict:
    deadline, seen = time.time() + seconds, []
    while time.time() < deadline:
        summary = client.predict(job_id, api_name="/train_status")
        seen.append(summary["status"])
        if summary["status"] in training_jobs.OVER:
            return {**summary, "seen": seen}
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish in {seconds} s: {seen[-5:]}")


@pytest.fixture(scope="module")
def api_job(client, tmp_path_factory) -> dict:
    """A one-step tagging job started through ``/train`` and polled through ``/train_status`` to its end."""
    from gradio_client import handle_file

    path = catalog(tmp_path_factory.mktemp("catalog") / "reviews.csv")
    budget = ("generate", 1.0, 1.0, 8, "api-tags")  # method, minutes, epochs, max samples (one step), name
    started = time.time()
    job_id = client.predict(
        handle_file(str(path)), None, "tagging", "text", ["tags"], "|", [], *budget, api_name="/train"
    )
    summary = wait_for(client, job_id)
    print(f"training job through the API: {time.time() - started:.0f} s")
    return summary


def test_api_refuses_a_budget_too_small(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = catalog(tmp_path / "reviews.csv")
    too_short = ("generate", 0.1, 1.0, 8, "api-tags")
    with pytest.raises(AppError, match="too small to train one step"):
        client.predict(
            handle_file(str(path)), None, "tagging", "text", ["tags"], "|", [], *too_short, api_name="/train"
        )
    assert training_jobs.running_job() is None, "nothing was started"


def test_api_trains_an_adapter_then_tags_with_it(client, api_job, tiny_runs):
    models, _ = launch_space(tiny_runs)
    summary = api_job
    assert summary["status"] == "done", summary["error"]
    assert {"preparing data", "training"} & set(summary["seen"]), "the status moves through the job's phases"
    assert summary["total_steps"] == summary["step"] == 1 and summary["losses"][0]["loss"] > 0
    assert summary["validation"] and summary["validation"][-1]["eval_loss"] > 0

    job = training_jobs.find_train_job(summary["id"])
    assert (job.run_dir / COMPLETE_MARKER).is_file() and (job.run_dir / PROGRESS_FILE).is_file()
    name = summary["adapter"]
    slot = models.slots[name]
    assert slot.task == "tagging" and slot.label == "api-tags (trained here)" and slot.engine is not None
    # the finish message says in plain words what a one-step adapter is worth
    notice = train_tab.status_notice(models, job)
    metrics = about.metrics_on_test(slot)
    assert notice.startswith("**Done:**")
    assert ("**Weaker than the baseline.**" in notice) == (metrics["adapter"]["micro_f1"] < metrics["baseline"]["micro_f1"])
    assert ("**Nothing will be flagged for review.**" in notice) == (slot.info.review_threshold == 0.0)
    taxonomy = load_taxonomy(job.run_dir)
    tags, notice, _, _ = client.predict("Smells amazing and lathers well", name, api_name="/tag")
    assert "wrong" not in notice and "not available" not in notice
    shown = {c["label"] for c in tags.get("confidences") or []} or {tags["label"]}
    assert shown <= set(taxonomy.labels) | {"(no tags)"}
    # the Space's own tagger is untouched beside it
    own, notice, _, _ = client.predict("Smells amazing and lathers well", api_name="/tag")
    assert "wrong" not in notice and own["label"]


def test_publish_from_the_app_uses_the_token_once(api_job, monkeypatch, tmp_path):
    """The job's run folder goes to a Hub (the local test server) with the token given; the token is
    in no answer, no log line and not left in the app's environment."""
    from conftest import running_hub
    from huggingface_hub import HfApi

    token = "hf_train_tab_test_token_0003"
    hub_gen = running_hub(tmp_path / "hub", {token: "user"})
    hub = next(hub_gen)
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        refused, field = train_tab.publish_trained(api_job["id"], "not a repo id", token)
        assert "Not published" in refused and field == ""
        notice, field = train_tab.publish_trained(api_job["id"], "user/app-tags", token)
        assert "Published" in notice and token not in notice, notice
        assert field == "", "the token field is emptied"
        assert "HF_TOKEN" not in os.environ
        job = training_jobs.find_train_job(api_job["id"])
        assert token not in job.log_tail(1000)
        files = set(HfApi(endpoint=hub.url, token=token).list_repo_files("user/app-tags"))
        assert {"adapter_model.safetensors", "catalog_lora.json", "README.md"} <= files
    finally:
        next(hub_gen, None)


def test_discarding_the_job_deletes_its_folder_and_its_adapter(client, api_job, tiny_runs):
    models, _ = launch_space(tiny_runs)
    job = training_jobs.find_train_job(api_job["id"])
    name, folder = api_job["adapter"], job.folder
    assert folder.is_dir() and name in models.slots
    job_id, notice, _ = train_tab.discard_training(models, api_job["id"])
    assert job_id is None and "discarded" in notice
    assert not folder.exists() and name not in models.slots
    assert training_jobs.find_train_job(api_job["id"]) is None
    _, notice, _, _ = client.predict("Smells amazing", name, api_name="/tag")
    assert "no adapter named" in notice
    own, notice, _, _ = client.predict("Smells amazing", api_name="/tag")
    assert own["label"] and "wrong" not in notice, "the Space's own adapters stay"


@pytest.mark.parametrize("separator", ["|", ","])
def test_the_label_preview_counts_the_labels_training_gets(tmp_path, separator):
    """Comma-separated tags under the default "|" separator are whole-cell labels ("Fragrance, Price") in
    training; the preview counts exactly those, not the tags its own text shows between commas."""
    import json
    import subprocess

    source = catalog(tmp_path / "reviews.csv", rows=80)
    rows = list(csv.reader(source.open(encoding="utf-8")))
    commas = tmp_path / "commas.csv"
    with commas.open("w", encoding="utf-8", newline="") as target:
        csv.writer(target).writerows([rows[0], *([text, tags.replace("|", ", ")] for text, tags in rows[1:])])
    request = tags_request(label_separator=separator)
    counts = train_requests.label_counts(frame_of(commas), request)

    job = training_jobs.TrainJob(request, tmp_path / "job", commas)
    job.folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(training_jobs.prepare_command(job), check=True, capture_output=True, env=env, timeout=300)
    trained = set()
    for split in ("train", "validation", "test"):
        lines = (job.folder / "data" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        trained |= {label for line in lines for label in json.loads(line)["labels"]}
    assert set(counts["label"]) == trained
    assert any("," in label for label in trained) == (separator == "|")
