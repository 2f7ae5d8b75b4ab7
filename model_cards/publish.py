"""Publish adapters, prepared datasets and the Space to the Hugging Face Hub.

    python -m model_cards.publish runs/sample-tagging --repo-id user/catalog-tagging [--private] [--revision BRANCH]
    python -m model_cards.publish adapter runs/sample-tagging --repo-id user/catalog-tagging [--dataset-id user/data]
    python -m model_cards.publish dataset data/sample/tagging --repo-id user/catalog-tagging-data [--private]
        (the same as ``python -m datasets_prep.prepare ... --push-to-hub``: both call datasets_prep.prepare.publish)
    python -m model_cards.publish space spaces --repo-id user/catalog-demo --adapter user/a --adapter user/b

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from catalog_lora.base_model import public_model_id
from catalog_lora.references import RUN_SUBFOLDER as REFERENCES
from catalog_lora.run_files import COMPLETE_MARKER, INFO_FILE, RunInfo
from model_cards.card import CardError, check_repo_id, render_adapter_card, space_readme

if TYPE_CHECKING:
    from huggingface_hub import HfApi

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
    f"{REFERENCES}/*",  # the nearest-training-examples index (catalog_lora.references), when built
]
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
# Task → the Space's adapter slot (the keys of ``adapters:`` in spaces/adapters.yaml, ADAPTERS in spaces/app.py).
SPACE_SLOTS = {"tagging": "tag", "category": "category", "description": "describe"}


class PublishError(RuntimeError):
    """Publishing was refused or failed; the message says why and what state the repository is in."""


@dataclass
class Published:
    repo_id: str
    repo_type: str
    url: str
    commit: str
    revision: str

    def __str__(self) -> str:
        return f"{self.repo_type} {self.repo_id} at commit {self.commit[:12]} on {self.revision}: {self.url}"


def resolve_token(token: str | None = None) -> str:
    """The token to write with: the one given, ``HF_TOKEN``, or the stored login."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token: set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens) or run `hf auth login`; nothing was uploaded"
        )
    return token


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def check_no_token_inside(folder: Path, patterns: list[str], token: str) -> None:
    """Refuse to upload a file that holds the token (a pasted snippet, a saved environment...)."""
    from huggingface_hub.utils import filter_repo_objects

    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    for name in filter_repo_objects(files, allow_patterns=patterns):
        if token.encode() in (folder / name).read_bytes():
            raise PublishError(f"{name} contains your Hub token; remove it from the file, nothing was uploaded")


def _head(api, repo_id: str, repo_type: str, revision: str) -> str | None:
    try:
        return api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    except Exception:
        return None


def open_repo(
    api: HfApi, repo_id: str, repo_type: str, *, private: bool | None, branch: str, space_sdk: str | None = None
) -> tuple[str, str | None]:
    """Create the repo (and branch) if needed, make it private if asked; its url and the branch's head commit."""
    url = api.create_repo(repo_id, repo_type=repo_type, private=private or None, exist_ok=True, space_sdk=space_sdk)
    if private:
        api.update_repo_settings(repo_id, repo_type=repo_type, private=True)
    if branch != "main":
        api.create_branch(repo_id, repo_type=repo_type, branch=branch, exist_ok=True)
    return str(url), _head(api, repo_id, repo_type, branch)


def publish_error(
    api: HfApi, repo_id: str, repo_type: str, branch: str, before: str | None, error: Exception, token: str
) -> PublishError:
    """The error of a failed upload: the repository, what state ``branch`` is left in, the cause (token scrubbed)."""
    after = _head(api, repo_id, repo_type, branch) if before else None
    if before is None:
        state = "nothing was uploaded"
    elif after == before:
        state = f"nothing was published: {branch} is still at {before[:12]}"
    elif after:
        state = f"{branch} moved from {before[:12]} to {after[:12]} and may hold a partial upload"
    else:
        state = "the state of the repository could not be checked"
    detail = _scrub(f"{type(error).__name__}: {error}", token)
    return PublishError(f"publishing to {repo_type} {repo_id} on {api.endpoint} failed, {state}:\n{detail}")


def _push(
    folder: Path,
    repo_id: str,
    repo_type: str,
    *,
    patterns: list[str],
    token: str,
    endpoint: str | None,
    private: bool,
    revision: str | None,
    message: str,
    space_sdk: str | None = None,
) -> Published:
    """Create the repo if needed and upload ``folder`` as one commit; errors name the repo and its state."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    check_no_token_inside(folder, patterns, token)
    before = None
    try:
        url, before = open_repo(api, repo_id, repo_type, private=private, branch=branch, space_sdk=space_sdk)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type=repo_type,
            folder_path=folder,
            revision=branch,
            commit_message=message,
            allow_patterns=patterns,
            delete_patterns=patterns,
        )
    except Exception as error:
        raise publish_error(api, repo_id, repo_type, branch, before, error, token) from None
    return Published(repo_id, repo_type, url, info.oid, branch)


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
) -> Published:
    """Render the card of a finished run folder and upload the folder as model repo ``repo_id``."""
    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    try:
        card = render_adapter_card(run_dir, repo_id, dataset_id=dataset_id, license=license)
    except CardError as error:
        raise PublishError(f"{error}; nothing was uploaded") from None
    if not (run_dir / COMPLETE_MARKER).is_file():
        raise PublishError(
            f"{run_dir} has no {COMPLETE_MARKER} marker, so its training did not finish; nothing was uploaded"
        )
    token = resolve_token(token)
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        staged = Path(tmp)
        for path in run_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, staged / path.name)
        card.save(staged / "README.md")  # the run folder gets the card only once the push has succeeded
        if (run_dir / REFERENCES).is_dir():
            shutil.copytree(run_dir / REFERENCES, staged / REFERENCES, ignore=SKIP)
        # A run folder records the base as the local folder it was loaded from; readers need its Hub id.
        config_path = staged / "adapter_config.json"
        adapter_config = json.loads(config_path.read_text())
        info = RunInfo.from_dict(json.loads((run_dir / INFO_FILE).read_text()))
        adapter_config["base_model_name_or_path"] = info.base_model_hub_id or public_model_id(info.base_model)
        config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
        published = _push(
            staged, repo_id, "model", patterns=ADAPTER_PATTERNS, token=token, endpoint=endpoint, private=private,
            revision=revision, message=f"Publish catalog-lora {info.task} adapter from {run_dir.name}",
        )
        shutil.copy2(staged / "README.md", run_dir / "README.md")
    return published


def publish_dataset(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> Published:
    """Publish a folder made by ``datasets_prep.prepare`` as dataset repo ``repo_id``.

    The project has one dataset publisher, :func:`datasets_prep.prepare.publish` (parquet splits
    through ``datasets``, the card, taxonomies and report); this is it under the publish CLI.
    """
    from datasets_prep.prepare import publish

    return publish(folder, repo_id, private=private, revision=revision, token=token, endpoint=endpoint)


def _front_matter(readme: Path) -> tuple[dict, str | None]:
    """The YAML front matter and the body of an existing README (``({}, None)`` when there is none)."""
    if not readme.is_file():
        return {}, None
    text = readme.read_text(encoding="utf-8")
    if text.startswith("---") and text.count("---") >= 2:
        _, front, body = text.split("---", 2)
        return yaml.safe_load(front) or {}, body
    return {}, text


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
            raise PublishError(f"{slots[slot]} and {adapter} are both {info.task} adapters; the Space takes one per task")
        slots[slot] = adapter
    bases = [info.base_model_hub_id or public_model_id(info.base_model) for info in infos.values()]
    with tempfile.TemporaryDirectory(prefix="publish-space-") as tmp:
        staged = Path(tmp) / "space"
        shutil.copytree(space_dir, staged, ignore=SKIP)
        shutil.rmtree(staged / "catalog_lora", ignore_errors=True)
        package_ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "hub_server.py")  # test-only module
        shutil.copytree(Path(catalog_lora.__file__).parent, staged / "catalog_lora", ignore=package_ignore)
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
            short_description=front.get("short_description", "Tag, categorize and describe products with LoRA adapters"),
            color_from=front.get("colorFrom", "indigo"),
            color_to=front.get("colorTo", "green"),
            pinned=bool(front.get("pinned", False)),
            body=body,
        )
        (staged / "README.md").write_text(readme, encoding="utf-8")
        return _push(
            staged, repo_id, "space", patterns=["*", "**/*"], token=token, endpoint=endpoint, private=private,
            revision=None, message="Publish the catalog-lora Space", space_sdk="gradio",
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
                args.run_dir, args.repo_id, private=args.private, revision=args.revision,
                dataset_id=args.dataset_id, license=args.license,
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
