"""Publish a prepared dataset folder as a Hub dataset repo: the project's one dataset publisher.

The splits go up as parquet through ``datasets`` (``DatasetDict.push_to_hub``, so
``load_dataset(repo_id)`` reads them with their features); then one commit adds the card
(the folder's ``README.md``, written by ``datasets_prep.prepare``, with its ``## Use`` section
loading the published repo and the ``configs`` and ``dataset_info`` the push wrote), the
taxonomies and ``report.json``, and deletes what an earlier publish left that the folder no
longer has (a taxonomy, jsonl splits of the old layout).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catalog_lora.records.dataset_files import CARD_FILE, REPORT_FILE, Report, split_path, to_dataset_dict
from catalog_lora.runs.folder import check_repo_id
from model_cards.hub import Published, PublishError, check_no_token_inside, open_repo, publish_error, resolve_token

# The files of a prepared folder that publishing reads (checked for a pasted token before any upload).
PUBLISHED_FILES = ["*.jsonl", "taxonomy*.json", REPORT_FILE, CARD_FILE]
USE_HEADING = "\n## Use\n"


@contextmanager
def _datasets_endpoint(endpoint: str) -> Iterator[None]:
    """Point ``datasets`` at ``endpoint`` for a while (it reads ``HF_ENDPOINT`` once, at import)."""
    from datasets import config

    saved, config.HF_ENDPOINT = config.HF_ENDPOINT, endpoint
    try:
        yield
    finally:
        config.HF_ENDPOINT = saved


def hub_card(folder: Path, repo_id: str, pushed):
    """The folder's card for the Hub: loading ``repo_id`` in ``## Use``, the metadata of the parquet push."""
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / CARD_FILE)
    body = card.text.split(USE_HEADING)[0].rstrip()
    use = f'```python\nfrom datasets import load_dataset\n\nds = load_dataset("{repo_id}")\n```\n'
    card.text = f"{body}\n{USE_HEADING}\n{use}"
    for key in ("configs", "dataset_info"):  # the parquet files, their features and sizes
        if pushed.data.get(key):
            card.data[key] = pushed.data[key]
    return card


def _check_folder(folder: Path) -> None:
    required = (REPORT_FILE, CARD_FILE, split_path(folder, "train").name)
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise PublishError(
            f"{folder} is not a prepared dataset folder: missing {', '.join(missing)} (prepare it with "
            "`python -m datasets_prep.prepare`, which writes the splits, taxonomy, report and card); nothing was uploaded"
        )


def publish_dataset(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> Published:
    """Publish a folder made by ``datasets_prep.prepare`` as dataset repo ``repo_id``; the folder's
    ``report.json`` then notes where it was published.

    ``revision`` is a branch, created from main when missing. Like the adapter publisher: a bad
    repo id raises ``ValueError``, and a missing token, a file holding the token, or a failed
    upload raise ``PublishError`` saying what state the repository is in; the token is never printed.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi

    check_repo_id(repo_id)
    folder = Path(folder)
    _check_folder(folder)
    token = resolve_token(token)
    check_no_token_inside(folder, PUBLISHED_FILES, token)
    splits = to_dataset_dict(folder)
    report = Report.load(folder)
    name = report.settings.get("name") or folder.name
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    before = None
    try:
        url, before = open_repo(api, repo_id, "dataset", private=private, branch=branch)
        with _datasets_endpoint(api.endpoint):
            splits.push_to_hub(repo_id, token=token, revision=branch, commit_message=f"Publish {name}: splits")
        with tempfile.TemporaryDirectory(prefix="dataset-card-") as cache:
            readme = api.hf_hub_download(repo_id, CARD_FILE, repo_type="dataset", revision=branch, cache_dir=cache)
            card = hub_card(folder, repo_id, DatasetCard.load(readme))
        files = [path.name for path in [*sorted(folder.glob("taxonomy*.json")), folder / REPORT_FILE]]
        operations = [CommitOperationAdd(CARD_FILE, str(card).encode("utf-8"))]
        operations += [CommitOperationAdd(file, folder / file) for file in files]
        for file in api.list_repo_files(repo_id, repo_type="dataset", revision=branch):
            if "/" not in file and file not in files and (file.startswith("taxonomy") or file.endswith(".jsonl")):
                operations.append(CommitOperationDelete(file))
        info = api.create_commit(
            repo_id,
            operations,
            repo_type="dataset",
            revision=branch,
            commit_message=f"Publish {name}: card, taxonomy and report",
        )
    except Exception as error:
        raise publish_error(api, repo_id, "dataset", branch, before, error, token) from None
    report.note(f"published to {url}")
    report.save(folder / REPORT_FILE)
    return Published(repo_id, "dataset", url, info.oid, branch)
