"""Local stand-in for the Hugging Face Hub HTTP API, so tests can run the real client libraries offline.

`LocalHub` is a standard-library HTTP server (``ThreadingHTTPServer`` in a daemon thread, bound to
127.0.0.1 on a free port) that implements the subset of the Hub API used by ``huggingface_hub``
(and through it by ``transformers`` and ``datasets``): repo info, tree listing, paths-info, file
resolution with HEAD/GET/Range, refs and commits listing, repo creation, preupload and NDJSON
commits. Repos live in memory; every commit gets a 40-hex sha, ``main`` moves to the newest commit
and older commits stay resolvable by sha.

It also injects faults for reliability tests: ``down``/``up`` (connection refused), ``fail_next``
(a burst of error statuses), ``slow`` (delay before answering), ``cut_after`` (truncated body),
``replace_file_in_place`` (content changes under an unchanged revision). ``requests`` records the
``(method, path)`` of every request received.

Usage in a test, through the ``local_hub`` fixture defined at the bottom of this module::

    def test_download(local_hub):
        sha = local_hub.add_repo("org/model", files={"config.json": b"{}"})
        path = huggingface_hub.hf_hub_download("org/model", "config.json", revision=sha)

The clients are pointed at the server through their public environment variables (``HF_ENDPOINT``,
``HF_HOME``, ``HF_HUB_CACHE``, ``HF_DATASETS_CACHE``, the offline switches...), set once per session
before they are imported (``configure_clients``, from tests/conftest.py); every cache and token path
is in the session's temporary folder. The fixture hands each test the session's hub, emptied, with
empty client caches. Client code run in a subprocess inherits the same environment.
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import hashlib
import http.server
import itertools
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

__all__ = ["LocalHub", "client_environment", "configure_clients", "files_from_dir", "local_hub"]

REPO_TYPES = ("model", "dataset", "space")

# Files the real Hub stores with Git LFS by default (subset of the `.gitattributes` it creates for
# new repos). LFS-ness changes what clients see: ETag is the sha256 instead of the git blob sha1,
# and tree entries carry an `lfs` object. Files of 10 MiB or more are LFS as well.
LFS_PATTERNS = tuple(
    """
    *.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lz4 *.mlmodel *.model *.msgpack *.npy
    *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar *.tflite
    *.tgz *.wasm *.xz *.zip *.zst
    """.split()
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
_LOCAL_USER = "local-user"
# Path segments that follow the repo id in API urls; needed to tell "org/name" ids from canonical
# single-segment ids ("bert-base-uncased") since both appear in the same url position.
_API_ACTIONS = frozenset({"revision", "tree", "paths-info", "preupload", "commit", "refs", "commits"})


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def files_from_dir(folder: str | Path) -> dict[str, bytes]:
    """Read every file under `folder` into the `{path_in_repo: bytes}` dict that `add_repo` takes."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# Repository model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """A file version. `size`/`sha256`/`git_oid` are what the server *advertises*; they normally
    derive from `content` and only diverge after `replace_file_in_place(..., keep_metadata=True)`."""

    content: bytes
    lfs: bool
    size: int
    sha256: str
    git_oid: str
    pointer_size: int

    @classmethod
    def of(cls, path: str, content: bytes) -> _Blob:
        sha256 = hashlib.sha256(content).hexdigest()
        lfs = len(content) >= LFS_SIZE_THRESHOLD or any(
            fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern) for pattern in LFS_PATTERNS
        )
        if lfs:
            # For LFS files git stores a pointer file; its blob sha1 is the git oid the Hub reports.
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(content)}\n"
            return cls(content, True, len(content), sha256, _git_blob_sha1(pointer.encode()), len(pointer))
        return cls(content, False, len(content), sha256, _git_blob_sha1(content), 0)

    @property
    def etag(self) -> str:
        # Same convention as the Hub: sha256 for LFS files, git blob sha1 otherwise.
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class _Commit:
    sha: str
    parent: str | None
    tree: dict[str, _Blob]
    title: str
    message: str
    date: str


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool = False
    gated: bool = False
    created_at: str = field(default_factory=_now_iso)
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> _Commit | None:
        """Branch, tag, full commit sha, or an unambiguous sha prefix of 7+ characters."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and revision in self.commits:
            sha = revision
        if sha is None and len(revision) >= 7:
            matches = [s for s in self.commits if s.startswith(revision.lower())]
            sha = matches[0] if len(matches) == 1 else None
        return self.commits.get(sha) if sha else None

    def last_change(self, commit: _Commit, path: str) -> _Commit:
        """Oldest ancestor of `commit` since which `path` is unchanged (for `expand=True` listings)."""
        blob = commit.tree.get(path)
        current = commit
        while current.parent is not None:
            parent = self.commits[current.parent]
            if parent.tree.get(path) != blob:
                break
            current = parent
        return current


class _HttpError(Exception):
    """Raised inside request handling; turned into a Hub-style error response."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # `up()` rebinds the same port right after `down()` closed it

    def __init__(self, address, hub: LocalHub):
        self.hub = hub
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # Clients hanging up (cuts, down(), timeouts) are expected here; anything else is a bug.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        # Clients pool keep-alive connections; without this a "down" hub would keep answering on them.
        # Only shutdown() here: the handler thread owning the socket closes it.
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; Range/Content-Length semantics
    server_version = "LocalHub/1.0"
    timeout = 30  # idle keep-alive connections must not pin handler threads forever
    server: _Server

    def do_GET(self):
        self.server.hub._handle(self)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format, *args):  # noqa: A002 - signature imposed by the base class
        pass  # keep pytest output clean; `LocalHub.requests` is the log

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, payload, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


# --------------------------------------------------------------------------------------------------
# The hub
# --------------------------------------------------------------------------------------------------


class LocalHub:
    """In-memory Hub served over HTTP. Start with `start()` (or the `local_hub` fixture)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._commit_counter = itertools.count()
        # Tokens that may read private/gated repos. The fixture sends no token, so gated repos 401.
        self.tokens: set[str] = set()
        # Fault injection state.
        self._fail_budget = 0
        self._fail_status = 503
        self._fail_match: str | None = None
        self._delay = 0.0
        self._cuts: list[tuple[str, int, str | None]] = []
        # Request log.
        self.requests: list[tuple[str, str]] = []
        self.request_log: list[SeenRequest] = []

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> LocalHub:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self._port), self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="LocalHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # closes the listening socket => new connections are refused
        server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- repository set-up ----------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        repo_type: str = "model",
        files: Mapping[str, bytes | str] | None = None,
        *,
        private: bool = False,
        gated: bool = False,
        message: str = "initial commit",
    ) -> str:
        """Create a repo whose `main` holds exactly `files`; returns the commit sha."""
        self._check_type(repo_type)
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id!r} already exists")
            self._repos[(repo_type, repo_id)] = _Repo(repo_id, repo_type, private=private, gated=gated)
            return self.commit(repo_id, repo_type, files or {}, message=message)

    def commit(
        self,
        repo_id: str,
        repo_type: str = "model",
        files: Mapping[str, bytes | str] | None = None,
        deleted: Iterable[str] = (),
        *,
        branch: str = "main",
        message: str = "update",
    ) -> str:
        """New commit on `branch` adding/overwriting `files` and removing `deleted`; returns its sha."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            parent = repo.commits.get(repo.branches.get(branch, ""))
            tree = dict(parent.tree) if parent else {}
            for path in deleted:
                if tree.pop(path, None) is None:
                    raise KeyError(f"cannot delete {path!r}: not in {repo_id}@{branch}")
            for path, content in (files or {}).items():
                data = content.encode() if isinstance(content, str) else bytes(content)
                tree[path.lstrip("/")] = _Blob.of(path, data)
            return self._new_commit(repo, branch, tree, message)

    def set_ref(self, repo_id: str, repo_type: str, name: str, revision: str = "main", *, tag: bool = True) -> str:
        """Point tag (or branch, with `tag=False`) `name` at `revision`; returns the commit sha."""
        with self._lock:
            repo = self._repo(repo_id, repo_type)
            target = repo.resolve(revision)
            if target is None:
                raise KeyError(f"unknown revision {revision!r} in {repo_id}")
            (repo.tags if tag else repo.branches)[name] = target.sha
            return target.sha

    def head(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """Commit sha that `revision` currently resolves to."""
        with self._lock:
            target = self._repo(repo_id, repo_type).resolve(revision)
            if target is None:
                raise KeyError(f"unknown revision {revision!r} in {repo_id}")
            return target.sha

    def replace_file_in_place(
        self,
        repo_id: str,
        repo_type: str,
        path: str,
        new_bytes: bytes,
        *,
        revision: str = "main",
        keep_metadata: bool = False,
    ) -> None:
        """Change a file's content under an existing commit, without creating a new commit.

        Simulates a server whose content changed under a pinned revision. Other commits sharing the
        old content are not affected. With `keep_metadata=True` the server keeps advertising the old
        ETag/size/sha256 (HEAD, tree, paths-info) while GET serves the new bytes: only a client-side
        checksum of the downloaded bytes can notice.
        """
        with self._lock:
            target = self._repo(repo_id, repo_type).resolve(revision)
            if target is None or path not in target.tree:
                raise KeyError(f"{path!r} not in {repo_id}@{revision}")
            old = target.tree[path]
            if keep_metadata:
                target.tree[path] = _Blob(new_bytes, old.lfs, old.size, old.sha256, old.git_oid, old.pointer_size)
            else:
                target.tree[path] = _Blob.of(path, new_bytes)

    def _new_commit(self, repo: _Repo, branch: str, tree: dict[str, _Blob], message: str) -> str:
        parent = repo.branches.get(branch)
        # Hash of the content plus a counter: identical trees still get distinct commits, like git.
        digest = hashlib.sha1(
            json.dumps(
                [
                    repo.repo_type,
                    repo.repo_id,
                    parent,
                    sorted((p, b.git_oid) for p, b in tree.items()),
                    message,
                    next(self._commit_counter),
                ]
            ).encode()
        ).hexdigest()
        title, _, body = message.partition("\n")
        repo.commits[digest] = _Commit(digest, parent, tree, title, body.strip(), _now_iso())
        repo.branches[branch] = digest
        return digest

    def _repo(self, repo_id: str, repo_type: str) -> _Repo:
        self._check_type(repo_type)
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r}") from None

    @staticmethod
    def _check_type(repo_type: str) -> None:
        if repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")

    # ---- fault injection ------------------------------------------------------------------------

    def down(self) -> None:
        """Stop listening and drop open connections: clients get 'connection refused'."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same port (and url) after `down()`."""
        self.start()

    def fail_next(self, n: int, status: int = 503, *, match: str | None = None) -> None:
        """Answer the next `n` requests (only those whose path contains `match`, if given) with `status`."""
        with self._lock:
            self._fail_budget, self._fail_status, self._fail_match = n, status, match

    def slow(self, seconds: float) -> None:
        """Wait `seconds` before answering each request; `slow(0)` restores normal speed."""
        self._delay = seconds

    def cut_after(self, path: str, nbytes: int, *, repo_id: str | None = None) -> None:
        """Make the next GET of file `path` announce the full Content-Length but close after `nbytes`.

        `path` is the file's path in the repo (any repo unless `repo_id` is given). One-shot: the
        following GET, e.g. a resume with Range, is served normally.
        """
        with self._lock:
            self._cuts.append((path, nbytes, repo_id))

    def reset_faults(self) -> None:
        with self._lock:
            self._fail_budget, self._delay, self._cuts = 0, 0.0, []

    def reset(self) -> None:
        """Forget all repos, faults, tokens and recorded requests (for a hub shared between tests)."""
        with self._lock:
            self._repos.clear()
            self.tokens.clear()
            self.requests.clear()
            self.request_log.clear()
        self.reset_faults()

    # ---- request dispatch -----------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        raw_segments = [s for s in split.path.split("/") if s]
        # Unquote per segment: revisions/paths are sent with "/" escaped as %2F inside one segment.
        segments = [unquote(s) for s in raw_segments]
        query = parse_qs(split.query, keep_blank_values=True)
        path = unquote(split.path)
        if path == "/api/agent-harnesses":
            # huggingface_hub fetches its AI-agent registry once per process, before its first request (for
            # the user-agent): the client's own housekeeping, so it is neither logged nor subject to faults.
            return h.send_json({"standardEnvVars": [], "harnesses": {}})
        self.requests.append((h.command, path))
        self.request_log.append(SeenRequest(h.command, path, query, {k.lower(): v for k, v in h.headers.items()}))
        body = h.read_body() if h.command in ("POST", "PUT") else b""

        if self._delay:
            time.sleep(self._delay)
        with self._lock:
            fail = self._fail_budget > 0 and (self._fail_match is None or self._fail_match in path)
            if fail:
                self._fail_budget -= 1
        if fail:
            h.send_json({"error": "injected failure"}, status=self._fail_status)
            return

        try:
            self._route(h, segments, query, body)
        except _HttpError as err:
            # Header values go out as latin-1: keep non-ASCII paths from breaking the error reply.
            headers = {"X-Error-Message": err.message.encode("ascii", "backslashreplace").decode()}
            if err.code:
                headers["X-Error-Code"] = err.code
            if err.commit:
                headers["X-Repo-Commit"] = err.commit
            h.send_json({"error": err.message}, status=err.status, headers=headers)
        except ConnectionError:  # client went away mid-response
            h.close_connection = True
        except Exception as exc:  # a bug in the fake must show up as a 500, not a hung client
            try:
                h.send_json({"error": f"LocalHub internal error: {exc!r}"}, status=500)
            except OSError:
                h.close_connection = True

    def _route(self, h: _Handler, segs: list[str], query: dict[str, list[str]], body: bytes) -> None:
        method = h.command
        if segs[:1] == ["api"]:
            rest = segs[1:]
            if rest == ["whoami-v2"]:
                return h.send_json(self._whoami())
            if rest == ["repos", "create"] and method == "POST":
                return self._api_create_repo(h, json.loads(body or b"{}"))
            if rest == ["validate-yaml"] and method == "POST":
                return h.send_json({"errors": [], "warnings": []})
            if rest[:1] == ["telemetry"]:
                return h.send_json({})
            if rest and rest[0] in ("models", "datasets", "spaces"):
                return self._route_repo_api(h, rest[0][:-1], rest[1:], query, body)
            raise _HttpError(404, f"LocalHub: unsupported API route /{'/'.join(segs)}")

        # File urls: /<repo>/resolve/<rev>/<path> for models, /datasets/<repo>/resolve/... otherwise.
        repo_type = "model"
        if segs[:1] in (["datasets"], ["spaces"]):
            repo_type, segs = segs[0][:-1], segs[1:]
        repo_id, rest = self._split_repo_id(repo_type, segs, frozenset({"resolve"}))
        if len(rest) >= 3 and rest[0] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(h, repo_type, repo_id, rest[1], "/".join(rest[2:]))
        raise _HttpError(404, f"LocalHub: unsupported route /{'/'.join(segs)}")

    def _route_repo_api(self, h, repo_type, segs, query, body) -> None:
        repo_id, rest = self._split_repo_id(repo_type, segs, _API_ACTIONS)
        method = h.command
        repo = self._visible_repo(h, repo_type, repo_id)
        action = rest[0] if rest else None
        if method == "GET" and action is None:
            return h.send_json(self._info(repo, self._commit_or_404(repo, "main"), query))
        if method == "GET" and action == "revision" and len(rest) == 2:
            return h.send_json(self._info(repo, self._commit_or_404(repo, rest[1]), query))
        if method == "GET" and action == "tree" and len(rest) >= 2:
            return h.send_json(self._tree(repo, rest[1], "/".join(rest[2:]), query))
        if method == "POST" and action == "paths-info" and len(rest) == 2:
            form = parse_qs(body.decode(), keep_blank_values=True)
            return h.send_json(self._paths_info(repo, rest[1], form))
        if method == "GET" and action == "refs":
            return h.send_json(self._refs(repo))
        if method == "GET" and action == "commits" and len(rest) == 2:
            return h.send_json(self._commits(repo, rest[1]))
        if method == "POST" and action == "preupload" and len(rest) == 2:
            return h.send_json(self._preupload(repo, rest[1], json.loads(body or b"{}"), query))
        if method == "POST" and action == "commit" and len(rest) == 2:
            return h.send_json(self._api_commit(repo, rest[1], body, query))
        raise _HttpError(404, f"LocalHub: unsupported {method} on {repo_type} repo API: {'/'.join(rest)}")

    def _split_repo_id(self, repo_type: str, segs: list[str], actions: frozenset[str]) -> tuple[str, list[str]]:
        candidates = [n for n in (2, 1) if len(segs) >= n and (len(segs) == n or segs[n] in actions)]
        with self._lock:
            for n in candidates:
                if (repo_type, "/".join(segs[:n])) in self._repos:
                    return "/".join(segs[:n]), segs[n:]
        if not candidates:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        n = candidates[0]  # unknown repo: any shape will do, it is reported as not found anyway
        return "/".join(segs[:n]), segs[n:]

    def _token(self, h: _Handler) -> str | None:
        auth = h.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _visible_repo(self, h: _Handler, repo_type: str, repo_id: str) -> _Repo:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        # Like the Hub, a private repo without a valid token looks exactly like a missing one.
        if repo is None or (repo.private and self._token(h) not in self.tokens):
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_or_404(self, repo: _Repo, revision: str) -> _Commit:
        with self._lock:
            commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ---- file resolution ------------------------------------------------------------------------

    def _resolve_file(self, h: _Handler, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._visible_repo(h, repo_type, repo_id)
        commit = self._commit_or_404(repo, revision)
        if repo.gated:
            token = self._token(h)
            if token is None:
                raise _HttpError(401, "Access to this gated repo requires a token", "GatedRepo")
            if token not in self.tokens:
                raise _HttpError(403, "Access to this gated repo is restricted", "GatedRepo")
        with self._lock:
            blob = commit.tree.get(path)
        if blob is None:
            # X-Repo-Commit lets huggingface_hub cache the file's absence for this commit (`.no_exist`).
            raise _HttpError(404, "Entry not found", "EntryNotFound", commit=commit.sha)

        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": _content_disposition(path.rsplit("/", 1)[-1]),
        }
        if blob.lfs:
            # The Hub answers LFS files with these linked headers (on its redirect to the CDN); no
            # X-Xet-* headers and no `Link: ...xet-auth` are ever sent, so clients use plain HTTP.
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(blob.size)

        data = blob.content
        status, start, end = 200, 0, len(data)
        range_header = h.headers.get("Range")
        if range_header:
            parsed = _parse_range(range_header, len(data))
            if parsed == "unsatisfiable":
                h.send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
                return
            if parsed is not None:
                status, (start, end) = 206, parsed
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        body = data[start:end]
        headers["Content-Length"] = str(len(body))

        if h.command == "GET" and (cut := self._take_cut(repo_id, path)) is not None:
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(body[:cut])
            h.wfile.flush()
            h.close_connection = True  # the server then closes the socket: body ends short
            return
        h.send(status, body, headers)

    def _take_cut(self, repo_id: str, path: str) -> int | None:
        with self._lock:
            for i, (cut_path, nbytes, cut_repo) in enumerate(self._cuts):
                if cut_path == path and cut_repo in (None, repo_id):
                    del self._cuts[i]
                    return nbytes
        return None

    # ---- API payloads ---------------------------------------------------------------------------

    def _whoami(self) -> dict:
        return {
            "type": "user",
            "id": "0" * 24,
            "name": _LOCAL_USER,
            "fullname": "Local User",
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        }

    def _info(self, repo: _Repo, commit: _Commit, query: dict[str, list[str]]) -> dict:
        with_blobs = query.get("blobs", ["false"])[-1].lower() in ("1", "true")
        siblings = []
        with self._lock:  # replace_file_in_place may swap entries concurrently
            tree = sorted(commit.tree.items())
        for path, blob in tree:
            sibling: dict = {"rfilename": path}
            if with_blobs:
                sibling.update(size=blob.size, blobId=blob.git_oid)
                if blob.lfs:
                    sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        if with_blobs:
            info["usedStorage"] = sum(blob.size for _, blob in tree)
        return info

    def _entry(self, repo: _Repo, commit: _Commit, path: str, expand: bool) -> dict:
        blob = commit.tree.get(path)
        if blob is not None:
            entry: dict = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
            changed = repo.last_change(commit, path)
        else:
            prefix = path + "/"
            children = sorted((p, b.git_oid) for p, b in commit.tree.items() if p.startswith(prefix))
            entry = {
                "type": "directory",
                "oid": hashlib.sha1(json.dumps(children).encode()).hexdigest(),
                "size": 0,
                "path": path,
            }
            changed = commit
        if expand:
            entry["lastCommit"] = {"id": changed.sha, "title": changed.title, "date": changed.date}
        return entry

    def _tree(self, repo: _Repo, revision: str, path: str, query: dict[str, list[str]]) -> list[dict]:
        commit = self._commit_or_404(repo, revision)
        recursive = query.get("recursive", ["false"])[-1].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[-1].lower() in ("1", "true")
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        with self._lock:
            files = [p for p in commit.tree if p.startswith(prefix)]
            if path and not files:
                raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound", commit=commit.sha)
            dirs: set[str] = set()
            listed_files: list[str] = []
            for p in files:
                parts = p[len(prefix) :].split("/")
                # Every folder between `path` and the file is listed when recursive, only the first otherwise.
                for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                    dirs.add(prefix + "/".join(parts[:depth]))
                if recursive or len(parts) == 1:
                    listed_files.append(p)
            # Hub order: folders first, then files.
            return [self._entry(repo, commit, d, expand) for d in sorted(dirs)] + [
                self._entry(repo, commit, f, expand) for f in sorted(listed_files)
            ]

    def _paths_info(self, repo: _Repo, revision: str, form: dict[str, list[str]]) -> list[dict]:
        commit = self._commit_or_404(repo, revision)
        expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
        out = []
        with self._lock:
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.tree or any(p.startswith(path + "/") for p in commit.tree):
                    out.append(self._entry(repo, commit, path, expand))
        return out  # unknown paths are silently skipped, as on the Hub

    def _refs(self, repo: _Repo) -> dict:
        with self._lock:
            return {
                "branches": [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()
                ],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()],
                "converts": [],
                "pullRequests": [],
            }

    def _commits(self, repo: _Repo, revision: str) -> list[dict]:
        commit: _Commit | None = self._commit_or_404(repo, revision)
        out = []
        with self._lock:
            while commit is not None:
                out.append(
                    {
                        "id": commit.sha,
                        "title": commit.title,
                        "message": commit.message,
                        "date": commit.date,
                        "authors": [{"user": _LOCAL_USER}],
                    }
                )
                commit = repo.commits.get(commit.parent) if commit.parent else None
        return out

    # ---- uploads --------------------------------------------------------------------------------

    def _api_create_repo(self, h: _Handler, payload: dict) -> None:
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HttpError(400, f"Invalid repo type {repo_type!r}")
        name, org = payload.get("name"), payload.get("organization")
        repo_id = f"{org or _LOCAL_USER}/{name}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.url}/{prefix}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # create_repo(exist_ok=True) reads "url" from this 409 body.
                return h.send_json({"error": "You already created this repo", "url": url}, status=409)
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            # The Hub seeds new repos with its default .gitattributes.
            self.add_repo(repo_id, repo_type, {".gitattributes": _GITATTRIBUTES}, private=private)
        h.send_json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _preupload(self, repo: _Repo, revision: str, payload: dict, query: dict) -> dict:
        commit = self._commit_or_404(repo, revision)
        files = []
        with self._lock:
            for f in payload.get("files", []):
                existing = commit.tree.get(f["path"])
                # "regular" for everything: content comes inline in the commit call, so neither LFS
                # nor Xet uploads are needed. The oid (git sha1 of the content, as the client
                # computes for regular files) lets the client skip unchanged files.
                files.append(
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": _git_blob_sha1(existing.content) if existing is not None else None,
                    }
                )
        return {"files": files, "commitOid": commit.sha}

    def _api_commit(self, repo: _Repo, revision: str, body: bytes, query: dict) -> dict:
        if query.get("create_pr", ["0"])[-1] in ("1", "true", "True"):
            raise _HttpError(400, "LocalHub does not support pull requests (create_pr)")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line.get("key") == "header"), {})
        with self._lock:
            if revision not in repo.branches:
                raise _HttpError(404, f"Invalid rev id: {revision} (commits go on branches)", "RevisionNotFound")
            head = repo.commits[repo.branches[revision]]
            parent_commit = header.get("parentCommit")
            if parent_commit and not head.sha.startswith(parent_commit):
                raise _HttpError(412, f"A commit has happened since. Parent is {head.sha}, not {parent_commit}")
            tree = dict(head.tree)
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    content = value["content"]
                    data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    tree[value["path"]] = _Blob.of(value["path"], data)
                elif key == "lfsFile":
                    blob = self._find_lfs_blob(value["oid"])
                    if blob is None:
                        raise _HttpError(422, f"LFS object {value['oid']} was never uploaded to LocalHub")
                    tree[value["path"]] = _Blob.of(value["path"], blob.content)
                elif key == "deletedFile":
                    if tree.pop(value["path"], None) is None:
                        raise _HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    for path in [p for p in tree if p.startswith(folder)]:
                        del tree[path]
            message = header.get("summary") or "update"
            if header.get("description"):
                message += "\n\n" + header["description"]
            sha = self._new_commit(repo, revision, tree, message)
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{self.url}/{prefix}{repo.repo_id}/commit/{sha}",
            "hookOutput": "",
            "pullRequestUrl": None,
        }

    def _find_lfs_blob(self, sha256: str) -> _Blob | None:
        # Copies of LFS files reference content by sha256 only; look it up anywhere on the hub.
        for repo in self._repos.values():
            for commit in repo.commits.values():
                for blob in commit.tree.values():
                    if blob.sha256 == sha256:
                        return blob
        return None


def _content_disposition(name: str) -> str:
    # Same shape as the Hub's; huggingface_hub reads `filename="..."` for progress-bar labels.
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"inline; filename*=UTF-8''{quote(name)}; filename=\"{ascii_name}\";"


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """Parse a single `bytes=` range into a half-open (start, end) slice.

    Returns None when the header should be ignored (malformed or multi-range: the full body is
    served with 200, which clients handle) and "unsatisfiable" for a range past the end (416).
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = (s.strip() for s in spec.partition("-"))
    try:
        if first == "":  # suffix range: the last N bytes
            n = int(last)
            return (max(size - n, 0), size) if n > 0 and size > 0 else "unsatisfiable"
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    if start >= size or start >= end:
        return "unsatisfiable"
    return start, end


# --------------------------------------------------------------------------------------------------
# pytest fixture
# --------------------------------------------------------------------------------------------------


# The clients (huggingface_hub, and through it transformers and datasets) read their endpoint, cache and
# token locations from these public environment variables once, when they are first imported; so they
# are set once per test session, before any test module is imported (`configure_clients`, called from
# tests/conftest.py's `pytest_configure`). The session's hub keeps one url for the whole session.
def client_environment(endpoint: str, home: Path) -> dict[str, str]:
    """The environment that points the clients at `endpoint`, with every cache and token path under `home`."""
    return {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_MODULES_CACHE": str(home / "modules"),
        "HF_HUB_OFFLINE": "0",  # not offline: the clients talk to the local hub (a test may switch it on)
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    }


# No token from anywhere, no staging hub, no legacy cache variables that would win over the ones above.
CLIENT_ENVIRONMENT_UNSET = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HUGGINGFACE_CO_STAGING",
                            "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_ASSETS_CACHE")

_session: tuple[LocalHub, Path] | None = None


def configure_clients(home: Path) -> LocalHub:
    """Choose the session hub's port and point the clients' environment at it, with caches under `home`.

    Must run before huggingface_hub is imported. The hub listens only while a test uses `local_hub`;
    between such tests its port refuses connections, as an unreachable Hub would.
    """
    global _session
    if "huggingface_hub" in sys.modules:
        raise RuntimeError("huggingface_hub was imported before the test clients' environment was set; "
                           "import it inside tests, not in a plugin or at conftest import time")
    hub = LocalHub().start()  # binds a free port, which stays the hub's for the session
    hub.stop()
    os.environ.update(client_environment(hub.url, home))
    for name in CLIENT_ENVIRONMENT_UNSET:
        os.environ.pop(name, None)
    _session = (hub, home)
    return hub


def _empty_client_caches(home: Path) -> None:
    """Forget what earlier tests downloaded, so a test sees an empty cache as it would on a new machine."""
    if home.is_dir():
        for child in home.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _reset_client_state() -> None:
    """Forget pooled connections and cached filesystem instances (public client functions)."""
    from huggingface_hub import HfFileSystem
    from huggingface_hub.utils import close_session

    close_session()
    # fsspec caches HfFileSystem instances by constructor args; drop those of earlier tests.
    HfFileSystem.clear_instance_cache()


@pytest.fixture
def local_hub() -> Iterator[LocalHub]:
    """The session's `LocalHub`, emptied and listening; the clients talk to it, their caches start empty."""
    if _session is None:
        raise RuntimeError("configure_clients() was not called: tests/conftest.py's pytest_configure calls it")
    hub, home = _session
    from huggingface_hub import constants

    if constants.ENDPOINT != hub.url:
        raise RuntimeError(f"huggingface_hub talks to {constants.ENDPOINT}, not the local hub {hub.url}: "
                           "it was imported before configure_clients() set HF_ENDPOINT")
    hub.reset()
    _empty_client_caches(home)
    _reset_client_state()
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        _reset_client_state()
