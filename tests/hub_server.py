"""A small Hugging Face Hub-compatible HTTP server, for tests and offline demos.

The unmodified ``huggingface_hub`` client talks to it when ``HF_ENDPOINT`` points at it (set
before ``huggingface_hub`` is imported) or when ``HfApi(endpoint=...)`` is given its url::

    with HubServer(tmp_path, tokens={"hf_test": "user"}) as server:
        HfApi(endpoint=server.url, token="hf_test").create_repo("user/demo")

What it implements is what the client's upload, download and info paths call (checked against
huggingface_hub 2.4): repo creation/deletion/settings, ``validate-yaml``, ``preupload``, NDJSON
commits, Git LFS, branches, repo info with ``siblings``/``sha``/``cardData``, trees, ``paths-info``,
``HEAD``/``GET`` on ``resolve`` with ``ETag``/``X-Repo-Commit``/``Content-Length``, Hub error codes
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and bearer tokens (writes need one;
private repos are visible to their owner only).

Git LFS works as on the Hub: ``preupload`` answers ``"lfs"`` for a file its repo's ``.gitattributes``
tracks with ``filter=lfs`` (``*.safetensors``, ``*.parquet``, ``*.bin``...), that is over 10 MiB or
whose first bytes hold a NUL (binary), and ``"regular"`` (content inline in the commit) otherwise.
The client then asks the LFS batch API (``POST /{repo}.git/info/lfs/objects/batch``, basic transfer)
where to ``PUT`` each object, the server checks what arrives against its sha256 and size, and the
commit names the object in an ``lfsFile`` line. ``resolve`` serves LFS files with the sha256 as
``ETag``/``X-Linked-Etag``, and trees, ``paths-info`` and ``siblings`` carry their ``lfs`` details.
The client uploads through Xet instead whenever ``hf_xet`` is installed, a choice it makes on its
own (no server answer changes it): set ``HF_HUB_DISABLE_XET=1`` before importing ``huggingface_hub``
(``CLIENT_ENV``), as the tests do. This server has no Xet storage and says so at the Xet token routes.

Storage is a folder: ``objects/<git blob sha1>`` holds git blobs (file contents, or the pointer file
of an LFS file, as in git), ``lfs/<sha256>`` LFS objects, and ``repos/<type>/<ns>/<name>.json`` the
repo's settings, branches, commits (each a full ``path → blob`` map) and the LFS objects uploaded to it.

``fail_next_commit = True`` (or ``fail_commits = n``) answers the next commit(s) with ``fail_status``
(500 by default) to exercise error paths. The client retries a 5xx commit only on its Xet upload path
(``upload_folder`` with ``hf_xet``), so with Xet off, as here, one failure fails the upload.
"""

from __future__ import annotations

import binascii
import fnmatch
import hashlib
import json
import re
import secrets
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
DEFAULT_BRANCH = "main"
COMMIT_OID = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What a new repo's .gitattributes stores in LFS (the Hub's default list, binary and data formats).
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle",
    "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*", "*.png", "*.jpg", "*.jpeg", "*.webp", "*.gif",
    "*.mp3", "*.wav", "*.flac", "*.ogg",
)
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)
LFS_SIZE = 10 * 1024 * 1024  # bigger files go to LFS whatever their name
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\n"
LFS_JSON = "application/vnd.git-lfs+json"
# The environment a huggingface_hub client needs to upload LFS files here (set before importing it).
CLIENT_ENV = {"HF_HUB_DISABLE_XET": "1"}
_INLINE = b'"content": "'
_FRONT_MATTER = re.compile(r"\A\ufeff?---\s*\n(.*?\n)?---\s*(\n|\Z)", re.S)


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file, as ``git hash-object`` and the Hub compute it."""
    sha = hashlib.sha1(b"blob %d\0" % len(data))
    sha.update(data)
    return sha.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores in place of an LFS object."""
    return LFS_POINTER + f"oid sha256:{sha256}\nsize {size}\n".encode()


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """``(sha256, size)`` of a pointer file, ``None`` for any other content."""
    match = re.fullmatch(rb"oid sha256:([0-9a-f]{64})\nsize (\d+)\n", data[len(LFS_POINTER):])
    return (match.group(1).decode(), int(match.group(2))) if data.startswith(LFS_POINTER) and match else None


def lfs_tracked(path: str, gitattributes: str) -> bool:
    """Whether a ``.gitattributes`` puts ``path`` in LFS (``filter=lfs``; a pattern without a slash matches names)."""
    name = path.rsplit("/", 1)[-1]
    for line in gitattributes.splitlines():
        pattern, *attributes = line.split() or ["#"]
        if not pattern.startswith("#") and "filter=lfs" in attributes:
            if fnmatch.fnmatchcase(path if "/" in pattern else name, pattern.lstrip("/")):
                return True
    return False


def _commit_line(line: bytes) -> dict:
    """One NDJSON line of a commit.

    A file's base64 content is most of its line (hundreds of MB for model weights) and holds no
    character JSON escapes, so it is cut out as bytes before the rest of the line is parsed.
    """
    if not line.startswith(b'{"key": "file"'):
        return json.loads(line)
    begin = line.find(_INLINE)
    if begin < 0:
        return json.loads(line)
    begin += len(_INLINE)
    end = line.index(b'"', begin)
    item = json.loads(line[:begin] + line[end:])
    item["value"]["content"] = memoryview(line)[begin:end]
    return item


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubError(Exception):
    """An HTTP error answer, with the Hub's ``X-Error-Code`` when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class Request:
    """What a route handler sees: method, url parts, user, body and the matched path parameters.

    The body is read when first asked for (``body``, or ``save_body`` that streams it to a file);
    the server reads what a handler left unread before answering, so a kept-alive connection stays
    in step.
    """

    def __init__(self, handler: BaseHTTPRequestHandler):
        self.handler = handler
        self.method = handler.command
        self.query = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        self.user: str | None = None
        self.params: dict = {}
        self._body: bytes | None = None
        self.body_started = self.body_read = False

    def _chunks(self, size: int = 1 << 20):
        """The body in pieces, once: Content-Length or chunked transfer encoding."""
        assert not self.body_started, "the body can be read once"
        self.body_started = True
        rfile, headers = self.handler.rfile, self.handler.headers
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            while length := int(rfile.readline().split(b";")[0].strip() or b"0", 16):
                yield rfile.read(length)
                rfile.readline()
            rfile.readline()
        else:
            left = int(headers.get("Content-Length") or 0)
            while left > 0:
                chunk = rfile.read(min(size, left))
                if not chunk:
                    raise HubError(400, "The request body ended early")
                left -= len(chunk)
                yield chunk
        self.body_read = True

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self._chunks())
        return self._body

    def drain(self) -> bool:
        """Read what the handler left of the body; ``False`` when that failed (the connection must close)."""
        if not self.body_started:
            try:
                self.body  # noqa: B018
            except Exception:
                return False
        return self.body_read

    def save_body(self, path: Path) -> tuple[str, int]:
        """Stream the body into ``path``; returns its sha256 and size."""
        sha, size = hashlib.sha256(), 0
        with path.open("wb") as file:
            for chunk in self._chunks():
                sha.update(chunk)
                size += len(chunk)
                file.write(chunk)
        return sha.hexdigest(), size

    def json(self) -> dict:
        body = self.body
        if not body:
            return {}
        if "x-www-form-urlencoded" in self.handler.headers.get("Content-Type", ""):
            form = parse_qs(body.decode(), keep_blank_values=True)
            return {k: (v if k == "paths" else v[-1]) for k, v in form.items()}
        return json.loads(body)

    def flag(self, name: str) -> bool:
        return str(self.query.get(name, "")).lower() in ("1", "true")


class Response:
    def __init__(self, status: int = 200, body: bytes | dict | list | str = b"", headers: dict | None = None,
                 content_length: int | None = None):
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        elif isinstance(body, str):
            body = body.encode()
        self.status, self.body, self.headers = status, body, headers or {}
        self.content_length = len(body) if content_length is None else content_length
        self.file: tuple[Path, int] | None = None  # (path, offset) of a body sent straight from disk


class HubServer:
    """An in-process Hub: ``start()`` returns its url, ``stop()`` ends it; also a context manager."""

    def __init__(self, root: str | Path | None = None, tokens: dict[str, str] | None = None, host: str = "127.0.0.1",
                 port: int = 0):
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="hub-server-")
        self.root = Path(root or self._tmp.name)
        for folder in ("objects", "lfs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.tokens = dict(tokens or {})  # token → user name
        self.host, self.port = host, port
        self.fail_commits = 0
        self.fail_status = 500
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every request, never headers
        self._lock = threading.RLock()
        self._uploads: dict[str, tuple[str, str, str, int]] = {}  # upload ticket → (type, repo, sha256, size)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Routes: (method, regex on the path with named groups, handler). First match wins.
        repo = r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
        prefix = r"(?:/(?P<type>datasets|spaces))?"
        lfs = prefix + r"/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects"
        self.routes = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("DELETE", r"/api/repos/delete", self.delete_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("GET", r"/api/whoami-v2", self.whoami),
            ("GET", r"/api/agent-harnesses", self.agent_harnesses),
            ("PUT", repo + r"/settings", self.update_settings),
            ("POST", repo + r"/preupload/(?P<rev>[^/]+)", self.preupload),
            ("POST", repo + r"/commit/(?P<rev>[^/]+)", self.commit),
            ("POST", lfs + r"/batch", self.lfs_batch),
            ("PUT", r"/lfs-upload/(?P<ticket>[\w-]+)", self.lfs_upload),
            ("POST", lfs + r"/verify", self.lfs_verify),
            ("GET", repo + r"/xet-(?:read|write)-token(?:/.*)?", self.xet_token),
            ("POST", repo + r"/branch/(?P<branch>[^/]+)", self.create_branch),
            ("GET", repo + r"/refs", self.refs),
            ("GET", repo + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self.tree),
            ("POST", repo + r"/paths-info/(?P<rev>[^/]+)", self.paths_info),
            ("GET", repo + r"(?:/revision/(?P<rev>[^/]+))?", self.repo_info),
            ("HEAD", prefix + r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve),
            ("GET", prefix + r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve),
        ]
        self._compiled = [(m, re.compile(p + r"/?$"), h) for m, p, h in self.routes]

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> str:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def fail_next_commit(self) -> bool:
        return self.fail_commits > 0

    @fail_next_commit.setter
    def fail_next_commit(self, value: bool) -> None:
        self.fail_commits = 1 if value else 0

    # ------------------------------------------------------------------ storage

    def _repo_file(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / f"{repo_id}.json"

    def _load(self, repo_type: str, repo_id: str) -> dict | None:
        path = self._repo_file(repo_type, repo_id)
        return json.loads(path.read_text()) if path.is_file() else None

    def _save(self, repo_type: str, repo_id: str, repo: dict) -> None:
        path = self._repo_file(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        tmp.replace(path)

    def _put_object(self, data: bytes) -> str:
        oid = git_blob_oid(data)
        path = self.root / "objects" / oid
        if not path.exists():
            tmp = path.with_name(f"{oid}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return oid

    def _object(self, oid: str) -> Path:
        return self.root / "objects" / oid

    def _lfs_object(self, sha256: str) -> Path:
        return self.root / "lfs" / sha256

    def _blob(self, oid: str) -> tuple[Path, int, dict | None]:
        """Where a git blob's content lies, its size and, for an LFS pointer, ``{"oid", "size", "pointerSize"}``."""
        path = self._object(oid)
        size = path.stat().st_size
        pointer = parse_lfs_pointer(path.read_bytes()) if size < 200 else None
        if pointer is None or not self._lfs_object(pointer[0]).is_file():  # a text file that looks like a pointer
            return path, size, None
        return self._lfs_object(pointer[0]), pointer[1], {"oid": pointer[0], "size": pointer[1], "pointerSize": size}

    def _content_oid(self, oid: str) -> str:
        """What preupload reports for a stored file: the sha256 of an LFS file, else the git blob id."""
        lfs = self._blob(oid)[2]
        return lfs["oid"] if lfs else oid

    def _add_commit(self, repo: dict, branch: str, files: dict, title: str, description: str = "") -> str:
        parent = repo["branches"].get(branch)
        date = _now()
        payload = json.dumps([parent, sorted(files.items()), title, description, date, time.perf_counter_ns()])
        oid = hashlib.sha1(payload.encode()).hexdigest()
        repo["commits"][oid] = {"parent": parent, "title": title, "message": description, "date": date, "files": files}
        repo["branches"][branch] = oid
        repo["lastModified"] = date
        return oid

    def repo_dict(self, repo_type: str, repo_id: str) -> dict | None:
        """The stored state of a repo (settings, branches, commits), for tests to inspect."""
        with self._lock:
            return self._load(repo_type, repo_id)

    # ------------------------------------------------------------------ access helpers

    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and user == namespace

    def _get_repo(self, req: Request, write: bool = False) -> tuple[str, str, dict]:
        repo_type = REPO_TYPES[req.params.get("type") or "models"]
        repo_id = req.params["repo"]
        namespace = repo_id.split("/")[0]
        if any(part in (".", "..") for part in repo_id.split("/")):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and req.user is None:
            raise HubError(401, "Invalid username or password: writing needs a token (Authorization: Bearer ...)")
        repo = self._load(repo_type, repo_id)
        if repo is None or (repo["private"] and req.user != namespace):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and not self._can_write(req.user, namespace):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo_type, repo_id, repo

    def _commit_of(self, repo: dict, revision: str) -> str:
        revision = unquote(revision)
        if revision in repo["branches"]:
            return repo["branches"][revision]
        if revision.startswith("refs/heads/") and revision[11:] in repo["branches"]:
            return repo["branches"][revision[11:]]
        if COMMIT_OID.fullmatch(revision) and revision in repo["commits"]:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    # ------------------------------------------------------------------ routes: repos

    def create_repo(self, req: Request) -> Response:
        data = req.json()
        repo_type = data.get("type") or "model"
        if repo_type not in REPO_TYPES.values():
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        name, namespace = data.get("name"), data.get("organization") or req.user
        if req.user is None:
            raise HubError(401, "You must be authenticated to create a repo (no token given)")
        if not name or not re.fullmatch(r"[\w.-]{1,96}", name) or not re.fullmatch(r"[\w.-]{1,96}", namespace or ""):
            raise HubError(400, f"Invalid repo name {namespace}/{name}")
        if not self._can_write(req.user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
        repo_id = f"{namespace}/{name}"
        url = self._repo_url(repo_type, repo_id)
        with self._lock:
            if self._load(repo_type, repo_id) is not None:
                return Response(409, {"error": "You already created this repo", "url": url})
            if repo_type == "space" and not data.get("sdk"):
                raise HubError(400, "A Space needs an sdk")
            private = data.get("visibility", "private" if data.get("private") else "public") != "public"
            repo = {"private": private, "sdk": data.get("sdk"), "createdAt": _now(), "branches": {}, "commits": {}}
            files = {".gitattributes": self._put_object(GITATTRIBUTES.encode())}
            self._add_commit(repo, DEFAULT_BRANCH, files, "initial commit")
            self._save(repo_type, repo_id, repo)
        return Response(200, {"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self, req: Request) -> Response:
        data = req.json()
        req.params.update(type=(data.get("type") or "model") + "s",
                          repo=f"{data.get('organization') or req.user}/{data.get('name')}")
        with self._lock:
            repo_type, repo_id, _ = self._get_repo(req, write=True)
            self._repo_file(repo_type, repo_id).unlink()
        return Response(200, {})

    def update_settings(self, req: Request) -> Response:
        data = req.json()
        with self._lock:
            repo_type, repo_id, repo = self._get_repo(req, write=True)
            if "visibility" in data:
                repo["private"] = data["visibility"] != "public"
            elif "private" in data:
                repo["private"] = bool(data["private"])
            self._save(repo_type, repo_id, repo)
        return Response(200, {"private": repo["private"]})

    def validate_yaml(self, req: Request) -> Response:
        match = _FRONT_MATTER.match(req.json().get("content", ""))
        if match:
            try:
                meta = yaml.safe_load(match.group(1) or "")
            except yaml.YAMLError as error:
                return Response(400, {"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []})
            if meta is not None and not isinstance(meta, dict):
                return Response(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        return Response(200, {"errors": [], "warnings": []})

    def whoami(self, req: Request) -> Response:
        if req.user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return Response(200, {"type": "user", "name": req.user, "orgs": [],
                              "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def agent_harnesses(self, req: Request) -> Response:
        """The client asks for this registry once a day; an empty one turns its agent detection off."""
        return Response(200, {"standardEnvVars": [], "harnesses": {}})

    def create_branch(self, req: Request) -> Response:
        with self._lock:
            repo_type, repo_id, repo = self._get_repo(req, write=True)
            branch = unquote(req.params["branch"])
            if branch in repo["branches"]:
                raise HubError(409, f"Branch {branch} already exists")
            start = req.json().get("startingPoint") or DEFAULT_BRANCH
            repo["branches"][branch] = self._commit_of(repo, start)
            self._save(repo_type, repo_id, repo)
        return Response(200, {})

    def refs(self, req: Request) -> Response:
        _, _, repo = self._get_repo(req)
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo["branches"].items()]
        return Response(200, {"branches": branches, "tags": [], "converts": [], "pullRequests": []})

    # ------------------------------------------------------------------ routes: upload

    def preupload(self, req: Request) -> Response:
        """Say per file whether it goes inline (``regular``) or through LFS, and the oid stored now."""
        _, _, repo = self._get_repo(req, write=True)
        files = self._files(repo, req.params["rev"])
        attributes = self._object(files[".gitattributes"]).read_text() if ".gitattributes" in files else ""
        answer = []
        for file in req.json().get("files", []):
            path = file["path"]
            binary = b"\0" in binascii.a2b_base64(file.get("sample") or "")
            lfs = lfs_tracked(path, attributes) or int(file.get("size") or 0) > LFS_SIZE or binary
            oid = self._content_oid(files[path]) if path in files else None
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return Response(200, {"files": answer, "commitOid": self._commit_of(repo, req.params["rev"])})

    def lfs_batch(self, req: Request) -> Response:
        """The Git LFS batch API, basic transfer: an upload action (and a verify) per object the repo lacks."""
        repo_type, repo_id, repo = self._get_repo(req, write=True)
        data = req.json()
        if data.get("operation") != "upload":
            raise HubError(400, "This server's LFS batch API takes uploads only (files download through resolve)")
        uploaded = repo.get("lfs", {})
        prefix = "" if repo_type == "model" else f"/{repo_type}s"
        objects = []
        for item in data.get("objects", []):
            oid, size = item.get("oid"), item.get("size")
            answer = {"oid": str(oid), "size": size if isinstance(size, int) else -1}
            if not (isinstance(oid, str) and SHA256.fullmatch(oid) and isinstance(size, int) and size >= 0):
                answer["error"] = {"code": 422, "message": "an object needs a sha256 oid and a size"}
            elif uploaded.get(oid) != size or not self._lfs_object(oid).is_file():
                ticket = secrets.token_urlsafe(24)
                with self._lock:
                    self._uploads[ticket] = (repo_type, repo_id, oid, size)
                answer["authenticated"] = True
                answer["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-upload/{ticket}", "expires_in": 3600},
                    "verify": {"href": f"{self.url}{prefix}/{repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(answer)  # an object with no actions is stored already
        return Response(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                        {"Content-Type": LFS_JSON})

    def lfs_upload(self, req: Request) -> Response:
        """The upload target of a batch answer, like a presigned url: the ticket in the path is the permission."""
        with self._lock:
            target = self._uploads.get(req.params["ticket"])
        if target is None:
            raise HubError(403, "Unknown or used upload url; ask the LFS batch API for a new one")
        repo_type, repo_id, oid, size = target
        tmp = self._lfs_object(f"{oid}.{req.params['ticket']}.tmp")
        try:
            got_oid, got_size = req.save_body(tmp)
            if (got_oid, got_size) != (oid, size):
                raise HubError(400, f"The upload does not match its object: sha256 {got_oid} and {got_size} bytes, "
                                    f"expected {oid} and {size} bytes")
            tmp.replace(self._lfs_object(oid))
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._uploads.pop(req.params["ticket"], None)
            repo = self._load(repo_type, repo_id)
            if repo is None:
                raise HubError(404, "Repository not found", "RepoNotFound")
            repo.setdefault("lfs", {})[oid] = size
            self._save(repo_type, repo_id, repo)
        return Response(200, b"")

    def lfs_verify(self, req: Request) -> Response:
        _, _, repo = self._get_repo(req, write=True)
        data = req.json()
        if repo.get("lfs", {}).get(data.get("oid")) != data.get("size"):
            raise HubError(404, f"LFS object {data.get('oid')} of {data.get('size')} bytes was not uploaded")
        return Response(200, {"oid": data["oid"], "size": data["size"]}, {"Content-Type": LFS_JSON})

    def xet_token(self, req: Request) -> Response:
        self._get_repo(req)
        raise HubError(501, "This Hub server has no Xet storage: set HF_HUB_DISABLE_XET=1 before importing "
                            "huggingface_hub so that the client uploads through Git LFS")

    def commit(self, req: Request) -> Response:
        repo_type, repo_id, _ = self._get_repo(req, write=True)
        if req.flag("create_pr"):
            raise HubError(400, "This server does not support pull requests")
        lines = [_commit_line(line) for line in req.body.split(b"\n") if line.strip()]
        with self._lock:
            if self.fail_commits > 0:
                self.fail_commits -= 1
                raise HubError(self.fail_status, "Internal Error - injected by the test server",
                               headers={"Retry-After": "0"})
            repo = self._load(repo_type, repo_id)
            branch = unquote(req.params["rev"])
            if branch not in repo["branches"]:
                raise HubError(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "The first line of a commit must be its header")
            header = lines[0]["value"]
            head = repo["branches"][branch]
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                raise HubError(412, f"parentCommit {parent} is not the head of {branch} ({head})")
            files = dict(repo["commits"][head]["files"])
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = str(PurePosixPath(value.get("path", "")))
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')}")
                    files[path] = self._put_object(binascii.a2b_base64(value["content"]))
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    files = {p: o for p, o in files.items() if not p.startswith(path.rstrip("/") + "/")}
                elif key == "lfsFile":
                    oid, size = value.get("oid"), value.get("size")
                    if value.get("algo", "sha256") != "sha256" or repo.get("lfs", {}).get(oid) != size:
                        raise HubError(422, f"{path}: LFS object {oid} of {size} bytes was not uploaded to this repo "
                                            "(upload it through the LFS batch API first)")
                    files[path] = self._put_object(lfs_pointer(oid, size))
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            oid = self._add_commit(repo, branch, files, header.get("summary", ""), header.get("description", ""))
            self._save(repo_type, repo_id, repo)
        url = f"{self._repo_url(repo_type, repo_id)}/commit/{oid}"
        return Response(200, {"success": True, "commitOid": oid, "commitUrl": url, "hookOutput": "",
                              "pullRequestUrl": None})

    # ------------------------------------------------------------------ routes: read

    def _files(self, repo: dict, revision: str) -> dict[str, str]:
        return repo["commits"][self._commit_of(repo, revision)]["files"]

    def _entry(self, path: str, oid: str) -> dict:
        _, size, lfs = self._blob(oid)
        return {"type": "file", "oid": oid, "size": size, "path": path, **({"lfs": lfs} if lfs else {})}

    def _folder(self, path: str, files: dict) -> dict:
        inside = sorted((p, o) for p, o in files.items() if p.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0,
                "path": path}

    def _card_data(self, files: dict) -> dict | None:
        if "README.md" not in files:
            return None
        readme = self._blob(files["README.md"])[0].read_text(encoding="utf-8", errors="replace")
        match = _FRONT_MATTER.match(readme)
        try:
            data = yaml.safe_load(match.group(1) or "") if match else None
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    def repo_info(self, req: Request) -> Response:
        repo_type, repo_id, repo = self._get_repo(req)
        sha = self._commit_of(repo, req.params.get("rev") or DEFAULT_BRANCH)
        commit = repo["commits"][sha]
        files = commit["files"]
        blobs = req.flag("blobs")
        siblings = []
        for path, oid in sorted(files.items()):
            sibling = {"rfilename": path}
            if blobs:
                _, size, lfs = self._blob(oid)
                sibling.update(size=size, blobId=oid)
                if lfs:
                    sibling["lfs"] = {"sha256": lfs["oid"], "size": size, "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        card = self._card_data(files)
        info = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "lastModified": commit["date"],
            "createdAt": repo["createdAt"],
            "private": repo["private"],
            "disabled": False,
            "gated": False,
            "likes": 0,
            "downloads": 0,
            "tags": list((card or {}).get("tags") or []),
            "siblings": siblings,
            "usedStorage": sum(self._blob(o)[1] for o in files.values()),
        }
        if card is not None:
            info["cardData"] = card
        if repo_type == "model":
            for key in ("pipeline_tag", "library_name", "model-index"):
                if card and key in card:
                    info[key] = card[key]
        if repo_type == "space":
            info.update(sdk=repo.get("sdk"), subdomain=repo_id.replace("/", "-").lower(),
                        runtime={"stage": "BUILDING", "hardware": {"current": None, "requested": "cpu-basic"}})
        return Response(200, info)

    def tree(self, req: Request) -> Response:
        _, _, repo = self._get_repo(req)
        files = self._files(repo, req.params["rev"])
        base = unquote(req.params.get("path") or "").strip("/")
        if base and base in files:
            return Response(200, [self._entry(base, files[base])])
        prefix = base + "/" if base else ""
        inside = {p: o for p, o in files.items() if p.startswith(prefix)}
        if base and not inside:
            raise HubError(404, f"{base} does not exist on {req.params['rev']}", "EntryNotFound")
        entries, folders = [], set()
        for path, oid in sorted(inside.items()):
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if folder not in folders and (req.flag("recursive") or depth == 1):
                    folders.add(folder)
                    entries.append(self._folder(folder, files))
            if req.flag("recursive") or len(parts) == 1:
                entries.append(self._entry(path, oid))
        return Response(200, entries)

    def paths_info(self, req: Request) -> Response:
        _, _, repo = self._get_repo(req)
        files = self._files(repo, req.params["rev"])
        paths = req.json().get("paths") or []
        entries = []
        for path in [paths] if isinstance(paths, str) else paths:
            path = path.strip("/")
            if path in files:
                entries.append(self._entry(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                entries.append(self._folder(path, files))
        return Response(200, entries)

    def resolve(self, req: Request) -> Response:
        _, _, repo = self._get_repo(req)
        sha = self._commit_of(repo, req.params["rev"])
        path = unquote(req.params["path"])
        oid = repo["commits"][sha]["files"].get(path)
        commit_header = {"X-Repo-Commit": sha}
        if oid is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers=commit_header)
        blob, size, lfs = self._blob(oid)
        # The ETag of an LFS file is its sha256 (the Hub sends it as X-Linked-Etag too), of any other its git oid.
        etag = f'"{lfs["oid"] if lfs else oid}"'
        headers = {**commit_header, "ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if lfs:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(size)})
        start, end = 0, size - 1
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", req.handler.headers.get("Range", ""))
        status = 200
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2) or size - 1), size - 1)
            if start >= size:
                raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response = Response(status, b"", headers, content_length=end - start + 1)
        if req.method == "GET":
            response.file = (blob, start)  # sent with sendfile, not read into memory
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubServer

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.hub.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.tokens[token]

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        req = Request(self)
        try:
            for method, pattern, handler in self.hub._compiled:
                match = pattern.match(path)
                if match and method == self.command:
                    req.params = {k: v for k, v in match.groupdict().items() if v is not None}
                    if "repo" in req.params:
                        req.params["repo"] = unquote(req.params["repo"])
                    req.user = self._user()
                    response = handler(req)
                    break
            else:
                response = Response(404, {"error": f"Sorry, we can't find the page you are looking for ({self.command} {path})"},
                                    {"X-Error-Message": "Not Found"})
        except HubError as error:
            headers = {"X-Error-Message": error.message, **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            response = Response(error.status, {"error": error.message}, headers)
        except Exception as error:  # a bug here must answer, not hang the client
            response = Response(500, {"error": f"{type(error).__name__}: {error}"})
        in_step = req.drain()
        self.hub.log.append((self.command, path, response.status))
        self.send_response(response.status)
        if not in_step:
            self.send_header("Connection", "close")
        for key, value in response.headers.items():
            self.send_header(key, " ".join(str(value).split()).encode("latin-1", "replace").decode("latin-1"))
        self.send_header("Content-Length", str(response.content_length))
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.file is None:
            self.wfile.write(response.body)
            return
        path, offset = response.file
        self.wfile.flush()
        with path.open("rb") as f:
            self.connection.sendfile(f, offset, response.content_length)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, format, *args) -> None:  # requests go to HubServer.log, not stderr
        pass
