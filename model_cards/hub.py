"""Writing to the Hub: the token, the repository, one commit, and errors that say what state it is left in.

Shared by the adapter, dataset and Space publishers (:mod:`model_cards.publish`,
:mod:`model_cards.dataset_repo`). The token is never printed or written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub import HfApi


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


def push_folder(
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
