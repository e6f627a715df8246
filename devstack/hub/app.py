"""The ASGI application of the Hub test server: client endpoints, auth, errors, faults, log.

Routing is done on the raw request path so that URL-encoded revisions (`refs%2Fpr%2F1`) and paths stay intact.
"""

from __future__ import annotations

import asyncio
import json
import math
import mimetypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from devstack.hub.catalog import EXPANDABLE, INFO_FIELDS, LIST_DEFAULT_FIELDS, LIST_FULL_FIELDS, Catalog
from devstack.hub.control import Faults, RequestLog, RequestRecord
from devstack.repostore import Commit, RepoMeta, RepoStore, RepoStoreError

_CHUNK = 1 << 20
_REPO_IN_PATH = re.compile(r"^/(?:api/models/)?([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:/|$)")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SORT_KEYS = {"trendingScore", "likes", "downloads", "lastModified", "createdAt", "id", "modelId"}
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass
class HubSettings:
    """Server settings; `tokens` may be replaced at runtime (the set is swapped atomically)."""

    tokens: frozenset[str] = frozenset()
    gated_denied: frozenset[tuple[str, str]] = frozenset()
    """(token, repo_id) pairs: a valid token that was not granted that gated repo (403 GatedRepo)."""
    page_size: int = 1000
    tree_page_size: int = 1000


class HubError(Exception):
    """An HTTP error answer with the Hub's `X-Error-Code` / `X-Error-Message` headers."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def response(self) -> Response:
        safe = re.sub(r"[\x00-\x1f\x7f]", " ", self.message).encode("ascii", "backslashreplace").decode()
        headers = {"X-Error-Message": safe[:1000], **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return Response(json.dumps({"error": self.message}), self.status, headers, "application/json")


def _json(data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), 200, headers, "application/json")


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _link_next(request: Request, cursor: int) -> dict[str, str]:
    url = request.url.include_query_params(cursor=str(cursor))
    return {"Link": f'<{url}>; rel="next"'}


def _cursor(request: Request) -> int:
    raw = request.query_params.get("cursor", "0")
    if not raw.isdigit():
        raise HubError(400, f"invalid cursor {raw[:40]!r}: follow the Link header the server sent")
    return int(raw)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of one `bytes=` range; None if none/ignored; HubError 416 if unsatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multi-range or another unit: serve the whole file, as servers may
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise HubError(
            416,
            f"range {header} not satisfiable for {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


class HubApp:
    """ASGI app serving a RepoStore the way the Hugging Face Hub does for `huggingface_hub` 2.x."""

    def __init__(self, store: RepoStore, settings: HubSettings, faults: Faults, log: RequestLog) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.settings = settings
        self.faults = faults
        self.log = log

    # ------------------------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        path = unquote(raw_path)
        request = Request(scope, receive)
        if path.startswith("/_devstack/"):
            response = await self._admin(request, path)
            await response(scope, receive, send)
            return
        status = 0
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        started = time.time()
        fault = self.faults.take(request.method, path, ranged=request.headers.get("range") is not None)
        authorized = False
        try:
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                headers = {"Retry-After": str(math.ceil(fault.retry_after))} if fault.retry_after is not None else {}
                raise HubError(fault.status, fault.message, headers=headers)
            authorized = self._authorize(request)
            response = await self._route(request, raw_path, authorized)
        except HubError as exc:
            response = exc.response()
        except (RepoStoreError, OSError, ValueError) as exc:  # a damaged store: answer 500, keep serving
            response = HubError(500, f"the repository store could not be read: {exc}"[:500]).response()
        self.log.begin()
        try:
            await response(scope, receive, counting_send)
        finally:
            match = _REPO_IN_PATH.match(path)
            repo_id = match.group(1) if match else None
            if repo_id is not None and repo_id.startswith("api/"):
                repo_id = None
            self.log.record(
                RequestRecord(
                    method=request.method,
                    path=path,
                    query=scope.get("query_string", b"").decode("latin-1"),
                    status=status,
                    bytes_sent=sent,
                    repo_id=repo_id,
                    range=request.headers.get("range"),
                    authorized=authorized,
                    fault=fault is not None and fault.status is not None,
                    started_at=started,
                    finished_at=time.time(),
                )
            )

    async def _settled_entries(self, settle_s: float = 2.0) -> list[RequestRecord]:
        """The request log once responses being sent are recorded, without blocking the event loop."""
        deadline = asyncio.get_running_loop().time() + settle_s
        while not self.log.settled() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return self.log.entries(settle_s=0)

    def _authorize(self, request: Request) -> bool:
        return self._token(request) is not None

    def _token(self, request: Request) -> str | None:
        """The caller's valid token, None without one; HubError 401 for a token the server does not know."""
        header = request.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token not in self.settings.tokens:
            raise HubError(401, INVALID_CREDENTIALS)
        return token

    async def _route(self, request: Request, raw_path: str, authorized: bool) -> Response:
        parts = [unquote(p) for p in raw_path.strip("/").split("/")]
        method = request.method
        if parts[:2] == ["api", "models"]:
            if len(parts) == 2 and method == "GET":
                return await run_in_threadpool(self._list_models, request, authorized)
            if len(parts) >= 4:
                repo_id = f"{parts[2]}/{parts[3]}"
                rest = parts[4:]
                if not rest and method == "GET":
                    return await run_in_threadpool(self._model_info, request, repo_id, None, authorized)
                if rest[:1] == ["revision"] and len(rest) >= 2 and method == "GET":
                    rev = "/".join(rest[1:])
                    return await run_in_threadpool(self._model_info, request, repo_id, rev, authorized)
                if rest[:1] == ["tree"] and len(rest) >= 2 and method == "GET":
                    return await run_in_threadpool(
                        self._tree, request, repo_id, rest[1], "/".join(rest[2:]), authorized
                    )
                if rest[:1] == ["paths-info"] and len(rest) >= 2 and method == "POST":
                    body = await request.body()
                    return await run_in_threadpool(self._paths_info, body, repo_id, "/".join(rest[1:]), authorized)
                if rest == ["refs"] and method == "GET":
                    return await run_in_threadpool(self._refs, repo_id, authorized)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{parts[0]}/{parts[1]}"
            return await run_in_threadpool(self._resolve, request, repo_id, parts[3], "/".join(parts[4:]), authorized)
        raise HubError(404, f"no such endpoint: {method} {raw_path[:200]}")

    # ------------------------------------------------------------------------------------------ access

    def _repo(self, repo_id: str, authorized: bool) -> RepoMeta:
        if not self.store.exists(repo_id):
            raise HubError(404, "Repository not found", "RepoNotFound")
        meta = self.store.meta(repo_id)
        if meta.private and not authorized:
            raise HubError(401, "Repository not found", "RepoNotFound")
        if meta.disabled:
            raise HubError(403, "Access to this resource is disabled.")
        return meta

    def _commit(self, repo_id: str, revision: str | None) -> Commit:
        commit = self.catalog.resolve(repo_id, revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ------------------------------------------------------------------------------------------ endpoints

    def _expand(self, request: Request) -> list[str]:
        expand = request.query_params.getlist("expand") + request.query_params.getlist("expand[]")
        unknown = [e for e in expand if e not in EXPANDABLE]
        if unknown:
            raise HubError(400, f'"expand" must be one of {sorted(EXPANDABLE)}; got {unknown[:5]}')
        return expand

    def _model_info(self, request: Request, repo_id: str, revision: str | None, authorized: bool) -> Response:
        meta = self._repo(repo_id, authorized)
        commit = self._commit(repo_id, revision)
        expand = self._expand(request)
        fields = expand or INFO_FIELDS
        blobs = _truthy(request.query_params.get("blobs"))
        return _json(self.catalog.model_info(repo_id, commit, meta, fields, blobs=blobs))

    def _list_models(self, request: Request, authorized: bool) -> Response:
        q = request.query_params
        expand = self._expand(request)
        if expand and (_truthy(q.get("full")) or _truthy(q.get("cardData")) or _truthy(q.get("config"))):
            raise HubError(400, "`expand` cannot be used with `full`, `cardData` or `config`")
        if expand:
            fields: list[str] = expand
        else:
            fields = list(LIST_DEFAULT_FIELDS)
            if _truthy(q.get("full")):
                fields += LIST_FULL_FIELDS
            if _truthy(q.get("cardData")):
                fields.append("cardData")
            if _truthy(q.get("config")):
                fields.append("config")
        sort = q.get("sort") or "trendingScore"
        if sort not in _SORT_KEYS:
            raise HubError(400, f"sort must be one of {sorted(_SORT_KEYS)}, got {sort[:40]!r}")
        descending = q.get("direction", "-1") != "1"
        filters = [t for f in q.getlist("filter") for t in f.split(",") if t]
        search = (q.get("search") or "").lower()
        author = q.get("author")
        pipeline = q.get("pipeline_tag")
        gated = q.get("gated")

        rows: list[tuple[Any, str, Commit, RepoMeta]] = []
        for repo_id in self.store.repos():
            meta = self.store.meta(repo_id)
            if (meta.private and not authorized) or meta.disabled:
                continue
            if search and search not in repo_id.lower():
                continue
            if author and repo_id.split("/", 1)[0] != author:
                continue
            if gated is not None and bool(meta.gated) != _truthy(gated):
                continue
            commit = self.catalog.resolve(repo_id, "main")
            if commit is None:
                continue
            if filters or pipeline:
                derived = self.catalog.derived(commit)
                labels = {*derived.tags, repo_id, derived.library_name or "", derived.pipeline_tag or ""}
                if any(f not in labels for f in filters) or (pipeline and derived.pipeline_tag != pipeline):
                    continue
            key: Any = {
                "trendingScore": meta.trending_score,
                "likes": meta.likes,
                "downloads": meta.downloads,
                "lastModified": commit.date,
                "createdAt": meta.created_at,
                "id": repo_id,
                "modelId": repo_id,
            }[sort]
            rows.append((key, repo_id, commit, meta))
        rows.sort(key=lambda r: r[1])  # ties break by id, ascending
        rows.sort(key=lambda r: r[0], reverse=descending)

        start = _cursor(request)
        size = self.settings.page_size
        if (limit := q.get("limit")) is not None:
            if not limit.isdigit() or int(limit) < 1:
                raise HubError(400, f"limit must be a positive integer, got {limit[:20]!r}")
            size = min(size, int(limit))
        page = rows[start : start + size]
        body = [self.catalog.model_info(r, c, m, fields) for _, r, c, m in page]
        headers = _link_next(request, start + size) if start + size < len(rows) else None
        return _json(body, headers)

    def _tree(self, request: Request, repo_id: str, revision: str, path: str, authorized: bool) -> Response:
        self._repo(repo_id, authorized)
        commit = self._commit(repo_id, revision)
        recursive = _truthy(request.query_params.get("recursive"))
        expand = _truthy(request.query_params.get("expand"))
        names = self.catalog.tree(commit, path, recursive=recursive)
        if names is None:
            raise HubError(404, f'{path} does not exist on "{revision}"', "EntryNotFound")
        start = _cursor(request)
        size = self.settings.tree_page_size
        page = [self.catalog.tree_entry(commit, n, expand=expand) for n in names[start : start + size]]
        headers = _link_next(request, start + size) if start + size < len(names) else None
        return _json([e for e in page if e is not None], headers)

    def _paths_info(self, body: bytes, repo_id: str, revision: str, authorized: bool) -> Response:
        self._repo(repo_id, authorized)
        commit = self._commit(repo_id, revision)
        form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        expand = _truthy((form.get("expand") or ["false"])[0])
        entries = [self.catalog.tree_entry(commit, p.strip("/"), expand=expand) for p in form.get("paths", [])]
        return _json([e for e in entries if e is not None])

    def _refs(self, repo_id: str, authorized: bool) -> Response:
        self._repo(repo_id, authorized)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
            for name, sha in sorted(self.store.refs(repo_id).items())
        ]
        return _json({"branches": branches, "converts": [], "tags": []})

    def _resolve(self, request: Request, repo_id: str, revision: str, path: str, authorized: bool) -> Response:
        meta = self._repo(repo_id, authorized)
        if meta.gated and not authorized:
            raise HubError(
                401,
                f"Access to model {repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in.",
                "GatedRepo",
            )
        if meta.gated and (self._token(request), repo_id) in self.settings.gated_denied:
            raise HubError(
                403,
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                "Visit the model page to ask for access.",
                "GatedRepo",
            )
        commit = self._commit(repo_id, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(
                404, f'{path} does not exist on "{revision}"', "EntryNotFound", {"X-Repo-Commit": commit.sha}
            )
        headers = {
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
            "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"',
            "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        span = parse_range(request.headers.get("range"), entry.size)
        start, end = span if span is not None else (0, entry.size - 1)
        length = max(end - start + 1, 0)
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(b"", status, headers)
        try:
            handle = self.store.object_path(entry.sha256).open("rb")
        except OSError as exc:
            raise HubError(500, f"object of {path} missing from the store: {exc}") from exc
        return StreamingResponse(_read_span(handle, start, length), status, headers)

    # ------------------------------------------------------------------------------------------ admin

    async def _admin(self, request: Request, path: str) -> Response:
        """Remote control for a server running in another process (`curate dev up`)."""
        if path == "/_devstack/health":
            return _json({"ok": True, "repos": len(self.store.repos())})
        if path == "/_devstack/requests":
            if request.method == "DELETE":
                self.log.clear()
            records = await self._settled_entries()
            totals: dict[str, int] = {}
            for r in records:
                if r.repo_id is not None:
                    totals[r.repo_id] = totals.get(r.repo_id, 0) + r.bytes_sent
            return _json({"requests": [r.as_dict() for r in records], "bytes_by_repo": totals})
        if path == "/_devstack/faults":
            if request.method == "DELETE":
                self.faults.clear()
            elif request.method == "POST":
                try:
                    spec = json.loads(await request.body())
                    if not isinstance(spec, dict) or not isinstance(spec.get("pattern"), str):
                        raise ValueError("body must be a JSON object with a string 'pattern'")
                    pattern = spec.pop("pattern")
                    self.faults.add(pattern, **spec)
                except (ValueError, TypeError, re.error) as exc:
                    return HubError(400, f"bad fault spec: {exc}").response()
            return _json([f.as_dict() for f in self.faults.list()])
        return HubError(404, f"no admin endpoint {path}").response()


def _read_span(handle: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        left = length
        while left > 0:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


__all__ = ["HubApp", "HubError", "HubSettings", "parse_range"]
