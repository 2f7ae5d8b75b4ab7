"""The Hub-compatible test server, driven by the real, unmodified huggingface_hub client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import hub_client_env, running_hub
from hub_server import HubServer, git_blob_oid, lfs_pointer
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_server_test_user_token_0001"
OTHER = "hf_server_test_other_token_0002"


pytestmark = pytest.mark.usefixtures("hub_online")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    yield from running_hub(tmp_path_factory.mktemp("hub"), {TOKEN: "user", OTHER: "other"})


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=TOKEN)


def client_env(hub, tmp_path, token: str | None = TOKEN) -> dict:
    return hub_client_env(hub, tmp_path / "hf-home", token)


def run_client(hub, tmp_path, code: str, token: str | None = TOKEN) -> dict:
    """Run ``code`` in a new Python process pointed at the server; it prints one JSON line last."""
    proc = subprocess.run([sys.executable, "-c", code], env=client_env(hub, tmp_path, token), capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_folder(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def test_create_upload_info_tree_and_download(api, hub, tmp_path):
    url = api.create_repo("user/demo")
    assert url == f"{hub.url}/user/demo"
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo("user/demo")
    assert conflict.value.response.status_code == 409
    assert api.create_repo("user/demo", exist_ok=True) == url

    weights = os.urandom(300_000)
    folder = make_folder(tmp_path / "up", {
        "README.md": "---\nlicense: mit\ntags: [lora, demo]\npipeline_tag: text-generation\n---\n# Demo\n",
        "weights.bin": weights,
        "sub/deep/note.txt": "hello",
    })
    commit = api.upload_folder(repo_id="user/demo", folder_path=folder, commit_message="first upload")
    assert len(commit.oid) == 40 and commit.commit_url.endswith(commit.oid)

    assert sorted(api.list_repo_files("user/demo")) == [".gitattributes", "README.md", "sub/deep/note.txt", "weights.bin"]
    info = api.model_info("user/demo", files_metadata=True)
    assert info.sha == commit.oid and info.private is False
    assert info.card_data.license == "mit" and info.tags == ["lora", "demo"] and info.pipeline_tag == "text-generation"
    sizes = {s.rfilename: (s.size, s.blob_id, s.lfs) for s in info.siblings}
    sha256 = hashlib.sha256(weights).hexdigest()  # *.bin is in LFS: git holds a pointer, the Hub the object
    assert sizes["weights.bin"][:2] == (300_000, git_blob_oid(lfs_pointer(sha256, 300_000)))
    assert (sizes["weights.bin"][2].sha256, sizes["weights.bin"][2].size) == (sha256, 300_000)
    assert sizes["README.md"][2] is None
    assert api.repo_info("user/demo", revision=commit.oid).sha == commit.oid

    top = {(type(e).__name__, e.path) for e in api.list_repo_tree("user/demo")}
    assert top == {("RepoFile", ".gitattributes"), ("RepoFile", "README.md"), ("RepoFile", "weights.bin"),
                   ("RepoFolder", "sub")}
    assert [e.path for e in api.list_repo_tree("user/demo", "sub")] == ["sub/deep"]
    deep = {e.path for e in api.list_repo_tree("user/demo", recursive=True)}
    assert {"sub", "sub/deep", "sub/deep/note.txt"} <= deep
    paths = {e.path: type(e).__name__ for e in api.get_paths_info("user/demo", ["sub", "weights.bin", "missing"])}
    assert paths == {"sub": "RepoFolder", "weights.bin": "RepoFile"}
    assert api.file_exists("user/demo", "sub/deep/note.txt") and not api.file_exists("user/demo", "nope.txt")
    assert api.repo_exists("user/demo") and not api.repo_exists("user/nothing-here")

    cache = tmp_path / "cache"
    path = hf_hub_download("user/demo", "weights.bin", endpoint=hub.url, cache_dir=cache, token=TOKEN)
    assert Path(path).read_bytes() == weights and commit.oid in path
    snapshot = Path(snapshot_download("user/demo", endpoint=hub.url, cache_dir=cache, token=TOKEN))
    assert (snapshot / "sub" / "deep" / "note.txt").read_text() == "hello"


def test_reupload_skips_unchanged_files_and_deletes(api, tmp_path):
    api.create_repo("user/updates")
    folder = make_folder(tmp_path / "up", {"a.txt": "a", "b.txt": "b"})
    first = api.upload_folder(repo_id="user/updates", folder_path=folder)
    again = api.upload_folder(repo_id="user/updates", folder_path=folder)
    assert again.oid == first.oid  # preupload returned the stored oids: nothing to commit

    (folder / "b.txt").unlink()
    (folder / "a.txt").write_text("a2")
    third = api.upload_folder(repo_id="user/updates", folder_path=folder, delete_patterns=["*.txt"])
    assert third.oid != first.oid
    assert sorted(api.list_repo_files("user/updates")) == [".gitattributes", "a.txt"]
    assert sorted(api.list_repo_files("user/updates", revision=first.oid)) == [".gitattributes", "a.txt", "b.txt"]
    api.delete_file("a.txt", "user/updates")
    assert api.list_repo_files("user/updates") == [".gitattributes"]


def test_http_headers_ranges_and_error_codes(api, hub, tmp_path):
    api.create_repo("user/raw")
    commit = api.upload_folder(repo_id="user/raw", folder_path=make_folder(tmp_path / "up", {"f.txt": "0123456789"}))
    url = f"{hub.url}/user/raw/resolve/main/f.txt"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
        assert response.headers["X-Repo-Commit"] == commit.oid
        assert response.headers["ETag"] == f'"{git_blob_oid(b"0123456789")}"'
        assert response.headers["Content-Length"] == "10"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=3-5"})) as response:
        assert response.status == 206 and response.read() == b"345"

    def error(path: str) -> tuple[int, str | None]:
        try:
            urllib.request.urlopen(f"{hub.url}{path}")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("X-Error-Code")
        raise AssertionError(f"{path} did not fail")

    assert error("/user/nope/resolve/main/f.txt") == (404, "RepoNotFound")
    assert error("/user/raw/resolve/v9/f.txt") == (404, "RevisionNotFound")
    assert error("/user/raw/resolve/main/missing.txt") == (404, "EntryNotFound")

    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/nope")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("user/raw", revision="v9")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("user/raw", "missing.txt", endpoint=hub.url, cache_dir=tmp_path / "c", token=TOKEN)


def request(hub, method: str, path: str, body: bytes | dict | None = None, token: str | None = TOKEN) -> tuple:
    """``(status, headers, body)`` of a raw request to the server."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{hub.url}{path}", data, headers, method=method)) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_lfs_preupload_batch_upload_commit_and_resolve(api, hub, tmp_path):
    api.create_repo("user/lfs", repo_type="dataset")
    parquet, binary = os.urandom(50_000), b"\0binary, named like text"
    files = [{"path": "data/train.parquet", "size": len(parquet), "sample": base64.b64encode(parquet[:512]).decode()},
             {"path": "notes.txt", "size": len(binary), "sample": base64.b64encode(binary).decode()},
             {"path": "README.md", "size": 5, "sample": base64.b64encode(b"# Hi\n").decode()}]
    status, _, body = request(hub, "POST", "/api/datasets/user/lfs/preupload/main", {"files": files})
    assert status == 200
    assert {f["path"]: f["uploadMode"] for f in json.loads(body)["files"]} == {
        "data/train.parquet": "lfs", "notes.txt": "lfs", "README.md": "regular"}

    # the client's own path: preupload, LFS batch, PUT, verify, then a commit with lfsFile lines
    folder = make_folder(tmp_path / "up", {"data/train.parquet": parquet, "notes.txt": binary, "README.md": "# Hi\n"})
    start = len(hub.log)
    commit = api.upload_folder(repo_id="user/lfs", repo_type="dataset", folder_path=folder)
    uploads = [line for line in hub.log[start:] if line[0] == "PUT"]
    assert len(uploads) == 2 and all(status == 200 for *_, status in uploads)
    assert ("POST", "/datasets/user/lfs.git/info/lfs/objects/batch", 200) in hub.log
    sha256 = hashlib.sha256(parquet).hexdigest()
    entry = api.get_paths_info("user/lfs", ["data/train.parquet"], repo_type="dataset")[0]
    assert (entry.size, entry.lfs.sha256, entry.blob_id) == (50_000, sha256, git_blob_oid(lfs_pointer(sha256, 50_000)))

    url = f"/datasets/user/lfs/resolve/{commit.oid}/data/train.parquet"
    status, headers, _ = request(hub, "HEAD", url, token=None)
    assert (status, headers["ETag"], headers["X-Linked-Etag"]) == (200, f'"{sha256}"', f'"{sha256}"')
    assert headers["X-Linked-Size"] == headers["Content-Length"] == "50000"
    assert request(hub, "GET", url, token=None)[2] == parquet
    path = hf_hub_download("user/lfs", "data/train.parquet", repo_type="dataset", endpoint=hub.url,
                           cache_dir=tmp_path / "cache", token=TOKEN)
    assert Path(path).read_bytes() == parquet and Path(path).resolve().name == sha256  # cached by its sha256

    # unchanged LFS files are not uploaded again: preupload reports the stored sha256
    assert api.upload_folder(repo_id="user/lfs", repo_type="dataset", folder_path=folder).oid == commit.oid
    assert len([line for line in hub.log[start:] if line[0] == "PUT"]) == 2

    # an upload url checks what it receives and serves once; a commit needs the object uploaded to this repo
    new = os.urandom(1000)
    new_oid = hashlib.sha256(new).hexdigest()
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": new_oid, "size": 1000}]}
    status, headers, body = request(hub, "POST", "/datasets/user/lfs.git/info/lfs/objects/batch", batch)
    assert status == 200 and json.loads(body)["transfer"] == "basic"
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"].removeprefix(hub.url)
    assert request(hub, "PUT", href, b"x" * 1000, token=None)[0] == 400
    assert request(hub, "PUT", href, new, token=None)[0] == 200
    assert request(hub, "PUT", href, new, token=None)[0] == 403
    assert request(hub, "POST", "/user/demo.git/info/lfs/objects/batch", batch, token=None)[0] == 401
    header = json.dumps({"key": "header", "value": {"summary": "by hand"}}).encode()

    def lfs_commit(repo: str, oid: str, size: int) -> int:
        line = json.dumps({"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": oid, "size": size}})
        return request(hub, "POST", f"/api/{repo}/commit/main", header + b"\n" + line.encode())[0]

    assert lfs_commit("datasets/user/demo-other", new_oid, 1000) == 404
    api.create_repo("user/lfs-other", repo_type="dataset")
    assert lfs_commit("datasets/user/lfs-other", new_oid, 1000) == 422  # uploaded to user/lfs, not here
    assert lfs_commit("datasets/user/lfs", new_oid, 999) == 422
    assert lfs_commit("datasets/user/lfs", new_oid, 1000) == 200
    assert hf_hub_download("user/lfs", "x.bin", repo_type="dataset", endpoint=hub.url, cache_dir=tmp_path / "cache",
                           token=TOKEN) and Path(path).read_bytes() == parquet

    status, _, body = request(hub, "GET", "/api/datasets/user/lfs/xet-write-token/main")
    assert status == 501 and b"HF_HUB_DISABLE_XET" in body


def test_tokens_and_private_repos(api, hub, tmp_path):
    anonymous = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(HfHubHTTPError) as no_token:
        anonymous.create_repo("user/sneaky")
    assert no_token.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as bad_token:
        HfApi(endpoint=hub.url, token="hf_not_a_real_token").model_info("user/demo")
    assert bad_token.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as other_namespace:
        HfApi(endpoint=hub.url, token=OTHER).create_repo("user/not-yours")
    assert other_namespace.value.response.status_code == 403

    api.create_repo("user/secret", private=True)
    api.upload_folder(repo_id="user/secret", folder_path=make_folder(tmp_path / "up", {"s.txt": "s"}))
    assert api.model_info("user/secret").private is True
    for outsider in (anonymous, HfApi(endpoint=hub.url, token=OTHER)):
        with pytest.raises(RepositoryNotFoundError):
            outsider.model_info("user/secret")
    with pytest.raises(HfHubHTTPError) as write:
        anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="user/secret")
    assert write.value.response.status_code in (401, 404)

    api.update_repo_settings("user/secret", private=False)
    assert anonymous.model_info("user/secret").private is False
    assert all(TOKEN.encode() not in p.read_bytes() for p in hub.root.rglob("*") if p.is_file())
    assert not any(TOKEN in " ".join(map(str, line)) for line in hub.log)


def test_branches_datasets_spaces_and_persistence(api, hub, tmp_path):
    api.create_repo("user/branchy")
    api.create_branch("user/branchy", branch="v2")
    on_branch = api.upload_file(path_or_fileobj=b"2", path_in_repo="v.txt", repo_id="user/branchy", revision="v2")
    refs = {b.name: b.target_commit for b in api.list_repo_refs("user/branchy").branches}
    assert refs["v2"] == on_branch.oid and refs["main"] != on_branch.oid
    assert "v.txt" not in api.list_repo_files("user/branchy")

    api.create_repo("user/table", repo_type="dataset")
    api.upload_file(path_or_fileobj=b'{"a": 1}\n', path_in_repo="train.jsonl", repo_id="user/table", repo_type="dataset")
    assert api.dataset_info("user/table").siblings[-1].rfilename == "train.jsonl"
    api.create_repo("user/app", repo_type="space", space_sdk="gradio")
    assert api.space_info("user/app").sdk == "gradio"

    reopened = HubServer(hub.root, tokens={TOKEN: "user"})
    reopened.start()
    try:
        assert HfApi(endpoint=reopened.url, token=TOKEN).list_repo_files("user/branchy", revision="v2")[-1] == "v.txt"
    finally:
        reopened.stop()


def test_injected_commit_failures(api, hub, tmp_path):
    api.create_repo("user/flaky")
    folder = make_folder(tmp_path / "up", {"x.txt": "x"})
    hub.fail_next_commit = True  # one 500 (with Xet off the client's single-commit path does not retry it)
    with pytest.raises(HfHubHTTPError) as failed:
        api.upload_folder(repo_id="user/flaky", folder_path=folder)
    assert failed.value.response.status_code == 500 and not hub.fail_next_commit
    assert "x.txt" not in api.list_repo_files("user/flaky")
    assert api.upload_folder(repo_id="user/flaky", folder_path=folder).oid

    hub.fail_commits, hub.fail_status = 1, 507  # not retried by the client
    try:
        with pytest.raises(HfHubHTTPError) as failed:
            api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id="user/flaky")
    finally:
        hub.fail_status = 500
    assert failed.value.response.status_code == 507
    assert "y.txt" not in api.list_repo_files("user/flaky")


def test_fresh_client_process_with_env(api, hub, tmp_path):
    """HF_ENDPOINT/HF_TOKEN set before import, as a user would: ModelCard and snapshot_download."""
    api.create_repo("user/carded")
    api.upload_folder(repo_id="user/carded", folder_path=make_folder(tmp_path / "up", {
        "README.md": "---\nlicense: apache-2.0\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n# Carded\n",
        "config.json": "{}",
    }))
    result = run_client(hub, tmp_path, """
import json
from huggingface_hub import HfApi, ModelCard, snapshot_download, constants
card = ModelCard.load("user/carded")
folder = snapshot_download("user/carded")
print(json.dumps({"endpoint": constants.ENDPOINT, "base": card.data.base_model, "text": card.text.strip(),
                  "files": sorted(__import__("os").listdir(folder)), "me": HfApi().whoami()["name"]}))
""")
    assert result == {"endpoint": hub.url, "base": "HuggingFaceTB/SmolLM2-135M-Instruct", "text": "# Carded",
                      "files": [".gitattributes", "README.md", "config.json"], "me": "user"}
