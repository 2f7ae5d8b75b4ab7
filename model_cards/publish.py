"""Publish adapters, prepared datasets and the Space to the Hugging Face Hub.

    python -m model_cards.publish runs/sample-tagging --repo-id user/catalog-tagging [--private] [--revision BRANCH]
    python -m model_cards.publish adapter runs/sample-tagging --repo-id user/catalog-tagging [--dataset-id user/data]
        [--export gguf] [--export onnx]
    python -m model_cards.publish dataset data/sample/tagging --repo-id user/catalog-tagging-data [--private]
        (``python -m datasets_prep.prepare ... --push-to-hub`` runs this command after preparing)
    python -m model_cards.publish space spaces --repo-id user/catalog-demo --adapter user/a --adapter user/b

``--export gguf|onnx`` also pushes what ``python -m model_cards.export <run> --format ...`` wrote into
``<run>/export/<format>`` to a sibling repo, ``<repo-id>-GGUF`` or ``<repo-id>-ONNX`` (the Hub's convention: a
repo per format, so a GGUF's downloaders are not sent the adapter and the reverse), with a card of its own, and
the adapter's card gets a "Use it in llama.cpp / Ollama" or "Use it with ONNX Runtime" section with the measured
agreement. An export flagged below its agreement threshold is refused.

The token comes from ``HF_TOKEN`` or the stored login (``hf auth login``); ``HF_ENDPOINT`` picks
another Hub. Re-publishing updates the repository in place: unchanged files are skipped and files
this project publishes that the folder no longer has are deleted. The token is never printed or
written anywhere, and a failed upload is reported with the repository and its state.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from catalog_lora.model.base_model import public_model_id
from catalog_lora.records.canonical import SPACE_SLOTS
from catalog_lora.records.labels import Taxonomy
from catalog_lora.retrieval.examples import save_plain as save_examples
from catalog_lora.retrieval.neighbours import save_plain as save_neighbours
from catalog_lora.retrieval.references import ReferenceIndex, ReferenceIndexError
from catalog_lora.runs.folder import (
    COMPLETE_MARKER,
    EXAMPLES_FILE,
    INFO_FILE,
    LEXICAL_FILES,
    NEIGHBOURS_FILE,
    REFERENCES_DIR,
    SEARCH_FILES,
    TAXONOMY_FILE,
    RunInfo,
    check_repo_id,
)
from catalog_lora.runs.markdown import split_front_matter
from model_cards.card import render_adapter_card, render_export_card
from model_cards.card_run import CardError
from model_cards.dataset_repo import publish_dataset
from model_cards.export import EXPORT_FILE, FORMATS, default_output
from model_cards.hub import Published, PublishError, push_folder, resolve_token
from model_cards.space_card import space_readme

# Files of a run folder that make up an adapter repo (and that re-publishing may delete when gone).
ADAPTER_PATTERNS = [
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    INFO_FILE,
    "taxonomy.json",
    "config.yaml",
    "metrics.json",
    "train_stats.json",
    "*.png",
    "README.md",
    f"{REFERENCES_DIR}/*",  # the nearest-training-examples index (catalog_lora.retrieval.references), when built
    NEIGHBOURS_FILE,  # the same examples as plain tensors, for the card's code (heads mixed with neighbours)
    EXAMPLES_FILE,  # and their texts and answers, for the card's code (prompts that show examples)
    *LEXICAL_FILES,  # a head's classical model, for the engine and the card's code (heads mixed with it)
    *SEARCH_FILES,  # a description head's TF-IDF search, for the engine and the card's code (pooled candidates)
]
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def publish_adapter(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
    token: str | None = None,
    endpoint: str | None = None,
    exports: list[str] = (),
) -> Published:
    """Render the card of a finished run folder and upload the folder as model repo ``repo_id``; ``exports``
    (``gguf``, ``onnx``): the run's exports, each to its sibling repo first (:func:`export_records`)."""
    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    records = export_records(run_dir, repo_id, exports)
    try:
        card = render_adapter_card(run_dir, repo_id, dataset_id=dataset_id, license=license, exports=records)
    except CardError as error:
        raise PublishError(f"{error}; nothing was uploaded") from None
    if not (run_dir / COMPLETE_MARKER).is_file():
        raise PublishError(
            f"{run_dir} has no {COMPLETE_MARKER} marker, so its training did not finish; nothing was uploaded"
        )
    info = RunInfo.from_dict(json.loads((run_dir / INFO_FILE).read_text()))
    if info.lexical_weight and not all((run_dir / name).is_file() for name in LEXICAL_FILES):
        raise PublishError(
            f"{run_dir} mixes its head with a TF-IDF model (lexical_weight={info.lexical_weight} in {INFO_FILE}) "
            f"but lacks {' or '.join(LEXICAL_FILES)}; nothing was uploaded"
        )
    if info.choice_search == "pooled" and not all((run_dir / name).is_file() for name in SEARCH_FILES):
        raise PublishError(
            f"{run_dir} pools its candidates with a TF-IDF search (choice_search in {INFO_FILE}) but lacks "
            f"{' or '.join(SEARCH_FILES)}; nothing was uploaded"
        )
    token = resolve_token(token)
    for record in records:
        publish_export(run_dir, repo_id, record, private=private, license=license, token=token, endpoint=endpoint)
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        staged = Path(tmp)
        for path in run_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, staged / path.name)
        card.save(staged / "README.md")  # the run folder gets the card only once the push has succeeded
        if (run_dir / REFERENCES_DIR).is_dir():
            shutil.copytree(run_dir / REFERENCES_DIR, staged / REFERENCES_DIR, ignore=SKIP)
        scratch = Path(tmp) / "index"
        if info.knn_k and info.knn_weight:
            _save_plain_index(
                run_dir,
                scratch,
                f"mixes its head with {info.knn_k} neighbours (knn_k in {INFO_FILE})",
                lambda index: save_neighbours(
                    index, Taxonomy.load(run_dir / TAXONOMY_FILE), info.label_levels, staged / NEIGHBOURS_FILE
                ),
            )
        if info.prompt_examples:
            _save_plain_index(
                run_dir,
                scratch,
                f"shows {info.prompt_examples} training example(s) in each prompt (prompt_examples in {INFO_FILE})",
                lambda index: save_examples(index, staged / NEIGHBOURS_FILE, staged / EXAMPLES_FILE),
            )
        # A run folder records the base as the local folder it was loaded from; readers need its Hub id.
        config_path = staged / "adapter_config.json"
        adapter_config = json.loads(config_path.read_text())
        adapter_config["base_model_name_or_path"] = info.base_model_hub_id or public_model_id(info.base_model)
        config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
        published = push_folder(
            staged,
            repo_id,
            "model",
            patterns=ADAPTER_PATTERNS,
            token=token,
            endpoint=endpoint,
            private=private,
            revision=revision,
            message=f"Publish catalog-lora {info.task} adapter from {run_dir.name}",
        )
        shutil.copy2(staged / "README.md", run_dir / "README.md")
    return published


def export_records(run_dir: Path, repo_id: str, formats: list[str]) -> list[dict]:
    """The ``export.json`` of each format's export of the run, with the sibling repo it goes to; a missing or
    flagged export is refused before anything is uploaded."""
    records = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise PublishError(f"--export {fmt!r} is not one of {', '.join(FORMATS)}; nothing was uploaded")
        path = default_output(str(run_dir), fmt) / EXPORT_FILE
        if not path.is_file():
            raise PublishError(
                f"{path} does not exist: run `python -m model_cards.export {run_dir} --format {fmt}` first; "
                "nothing was uploaded"
            )
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("flagged"):
            raise PublishError(
                f"{path.parent} is flagged: {record['summary']}, below the {record['min_agreement']:.0%} it was held to; "
                "nothing was uploaded"
            )
        records.append({**record, "repo_id": f"{repo_id}-{fmt.upper()}"})
    return records


def publish_export(
    run_dir: Path, repo_id: str, record: dict, *, private: bool, license: str, token: str, endpoint: str | None
) -> Published:
    """One export's folder and its card as the model repo ``record["repo_id"]``."""
    folder = default_output(str(run_dir), record["format"])
    with tempfile.TemporaryDirectory(prefix="publish-export-") as tmp:
        staged = Path(tmp)
        for name in record["files"]:
            shutil.copy2(folder / name, staged / name)
        render_export_card(run_dir, repo_id, record, license=license).save(staged / "README.md")
        return push_folder(
            staged,
            record["repo_id"],
            "model",
            patterns=["*"],
            token=token,
            endpoint=endpoint,
            private=private,
            revision=None,
            message=f"Publish the {record['format'].upper()} export of {repo_id}",
        )


def _save_plain_index(run_dir: Path, scratch: Path, uses: str, write: Callable[[ReferenceIndex], object]) -> None:
    """The card's code searches the training examples without ChromaDB: ``write`` saves the index as plain files.

    ``uses`` says what the run needs the index for. Read from a copy of the index, since opening a
    ChromaDB folder may write to it and a publish leaves the run folder as it was."""
    if not (run_dir / REFERENCES_DIR).is_dir():
        raise PublishError(
            f"{run_dir} {uses} but has no {REFERENCES_DIR}/ index to take them from; nothing was uploaded"
        )
    shutil.copytree(run_dir / REFERENCES_DIR, scratch, ignore=SKIP)
    try:
        with ReferenceIndex.open(scratch) as index:
            write(index)
    except ReferenceIndexError as error:
        raise PublishError(f"{error}; nothing was uploaded") from None


def _front_matter(readme: Path) -> tuple[dict, str | None]:
    """The YAML front matter and the body of an existing README (``({}, None)`` when there is none)."""
    if not readme.is_file():
        return {}, None
    front, body = split_front_matter(readme.read_text(encoding="utf-8"))
    return (yaml.safe_load(front) or {}) if front else {}, body


def _adapter_infos(adapters: list[str], token: str, endpoint: str | None) -> dict[str, RunInfo]:
    """``catalog_lora.json`` of each published adapter: the Space needs to know which task each one does."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    infos = {}
    with tempfile.TemporaryDirectory(prefix="space-adapters-") as cache:  # a peek, not worth caching
        for adapter in adapters:
            try:
                path = hf_hub_download(adapter, INFO_FILE, endpoint=endpoint, token=token, cache_dir=cache)
            except (RepositoryNotFoundError, EntryNotFoundError):
                raise PublishError(
                    f"{adapter} is not a published catalog-lora adapter (no {INFO_FILE} on the Hub); publish it "
                    "first with `python -m model_cards.publish adapter <run dir> --repo-id ...`; nothing was uploaded"
                ) from None
            infos[adapter] = RunInfo.from_dict(json.loads(Path(path).read_text()))
    return infos


def publish_space(
    space_dir: str | Path,
    repo_id: str,
    adapters: list[str],
    *,
    title: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> Published:
    """Upload the Space: ``space_dir``, a copy of ``catalog_lora``, the adapters in ``adapters.yaml`` and README.

    Each adapter (a published Hub id) goes to the Space slot of its task; the README keeps the
    folder's front matter and body, with the gradio ``sdk_version`` installed here and ``models:``
    listing the adapters and their base models.
    """
    import catalog_lora

    check_repo_id(repo_id)
    if not adapters:
        raise PublishError("a Space needs at least one adapter: pass --adapter user/name (repeat for several)")
    for adapter in adapters:
        check_repo_id(adapter)
    space_dir = Path(space_dir)
    if not (space_dir / "app.py").is_file():
        raise PublishError(f"{space_dir} has no app.py, the file a Gradio Space runs; nothing was uploaded")
    token = resolve_token(token)
    infos = _adapter_infos(adapters, token, endpoint)
    slots: dict[str, str] = {}
    for adapter, info in infos.items():
        slot = SPACE_SLOTS[info.task]
        if slot in slots:
            raise PublishError(
                f"{slots[slot]} and {adapter} are both {info.task} adapters; the Space takes one per task"
            )
        slots[slot] = adapter
    bases = [info.base_model_hub_id or public_model_id(info.base_model) for info in infos.values()]
    with tempfile.TemporaryDirectory(prefix="publish-space-") as tmp:
        staged = Path(tmp) / "space"
        shutil.copytree(space_dir, staged, ignore=SKIP)
        shutil.rmtree(staged / "catalog_lora", ignore_errors=True)
        shutil.copytree(Path(catalog_lora.__file__).parent, staged / "catalog_lora", ignore=SKIP)
        settings_file = staged / "adapters.yaml"
        settings = (yaml.safe_load(settings_file.read_text()) if settings_file.is_file() else None) or {}
        settings["adapters"] = {slot: slots.get(slot) for slot in SPACE_SLOTS.values()}
        settings_file.write_text(
            "# Written by `python -m model_cards.publish space`: the published adapters, one per task.\n"
            + yaml.safe_dump(settings, sort_keys=False)
        )
        front, body = _front_matter(space_dir / "README.md")
        readme = space_readme(
            title or front.get("title") or repo_id.split("/")[1].replace("-", " ").replace("_", " ").title(),
            adapters,
            base_models=bases,
            emoji=front.get("emoji", "🛍️"),
            license=front.get("license", "apache-2.0"),
            short_description=front.get(
                "short_description", "Tag, categorize and describe products with LoRA adapters"
            ),
            color_from=front.get("colorFrom", "indigo"),
            color_to=front.get("colorTo", "green"),
            pinned=bool(front.get("pinned", False)),
            body=body,
        )
        (staged / "README.md").write_text(readme, encoding="utf-8")
        return push_folder(
            staged,
            repo_id,
            "space",
            patterns=["*", "**/*"],
            token=token,
            endpoint=endpoint,
            private=private,
            revision=None,
            message="Publish the catalog-lora Space",
            space_sdk="gradio",
        )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("adapter", "dataset", "space", "-h", "--help"):
        argv.insert(0, "adapter")  # `publish <run dir> --repo-id ...` publishes an adapter
    parser = argparse.ArgumentParser(
        prog="python -m model_cards.publish", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    adapter = commands.add_parser("adapter", help="a finished run folder, as a model repo with its card")
    adapter.add_argument("run_dir")
    adapter.add_argument("--dataset-id", help="Hub id of the published training dataset, for the card")
    adapter.add_argument("--license", default="apache-2.0")
    adapter.add_argument(
        "--export", action="append", default=[], choices=tuple(FORMATS), help="also push this export (repeat)"
    )
    dataset = commands.add_parser("dataset", help="a folder made by datasets_prep.prepare, as parquet with its card")
    dataset.add_argument("folder")
    space = commands.add_parser("space", help="the Space folder, with a copy of catalog_lora")
    space.add_argument("space_dir")
    space.add_argument("--adapter", action="append", default=[], dest="adapters", help="adapter repo id (repeat)")
    space.add_argument("--title")
    for sub in (adapter, dataset, space):
        sub.add_argument("--repo-id", required=True, help="namespace/name on the Hub")
        sub.add_argument("--private", action="store_true", help="make the repository private")
    for sub in (adapter, dataset):
        sub.add_argument("--revision", help="branch to publish to (created from main when missing)")
    args = parser.parse_args(argv)
    try:
        if args.command == "adapter":
            result = publish_adapter(
                args.run_dir,
                args.repo_id,
                private=args.private,
                revision=args.revision,
                dataset_id=args.dataset_id,
                license=args.license,
                exports=args.export,
            )
        elif args.command == "dataset":
            result = publish_dataset(args.folder, args.repo_id, private=args.private, revision=args.revision)
        else:
            result = publish_space(args.space_dir, args.repo_id, args.adapters, title=args.title, private=args.private)
    except (PublishError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Published {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
