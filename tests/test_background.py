"""The background batch run: chunks in order, the finished part on disk after every chunk, one run at a time."""

from __future__ import annotations

import pandas as pd

from catalog_lora.catalogs import background
from catalog_lora.catalogs.background import DONE, FAILED, BatchJob, find_job


def upper(chunk: pd.DataFrame, report) -> pd.DataFrame:
    report(len(chunk))
    return chunk.assign(answer=chunk["text"].str.upper())


def keep(rows: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(answer=predictions["answer"].tolist())


def test_the_finished_part_is_on_disk_while_the_rest_runs(tmp_path):
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(5)]})
    seen = []

    def predict(chunk, report):
        job = find_job(job_id[0])
        seen.append(pd.read_csv(job.partial)["text"].tolist() if job.partial.is_file() else [])
        return upper(chunk, report)

    job_id = []
    job = BatchJob(frame, predict, keep, tmp_path / "out.csv", chunk_rows=2)
    job_id.append(job.id)
    job.start().wait(every=0.01)
    assert job.status == DONE and job.rows_done == job.units_done == 5
    assert seen == [[], ["row 0", "row 1"], ["row 0", "row 1", "row 2", "row 3"]], "each chunk saved before the next"
    assert pd.read_csv(job.partial)["answer"].tolist() == [f"ROW {i}" for i in range(5)] and job.partial == job.target


def test_a_failed_run_keeps_its_finished_rows(tmp_path):
    frame = pd.DataFrame({"text": ["a", "b", "c"]})

    def predict(chunk, report):
        if "c" in chunk["text"].tolist():
            raise RuntimeError("injected fault")
        return upper(chunk, report)

    job = BatchJob(frame, predict, keep, tmp_path / "out.csv", chunk_rows=2).start().wait(every=0.01)
    assert job.status == FAILED and "injected fault" in job.error and job.rows_done == 2
    assert pd.read_csv(job.partial)["answer"].tolist() == ["A", "B"] and not job.target.exists()


def test_old_finished_jobs_are_forgotten(tmp_path, monkeypatch):
    monkeypatch.setattr(background, "KEPT_JOBS", 2)
    frame = pd.DataFrame({"text": ["a"]})
    jobs = [BatchJob(frame, upper, keep, tmp_path / f"{i}.csv").start().wait(every=0.01) for i in range(4)]
    assert find_job(jobs[0].id) is None and find_job(jobs[-1].id) is jobs[-1]
