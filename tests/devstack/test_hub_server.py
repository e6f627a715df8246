"""The Hub test server driven by the real huggingface_hub client (HfApi, hf_hub_download, snapshots)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
import pytest
from huggingface_hub import (
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    DisabledRepoError,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from devstack.hub_server import HubServer
from devstack.net import LOOPBACK, free_port, wait_for_http
from devstack.process import start_process
from devstack.repostore import RepoStore, git_blob_oid
from tests.fixtures.hub import DEFAULT_CARD, build_repo, tiny_safetensors

HubFactory = Callable[..., HubServer]
SortKey = Literal["created_at", "downloads", "last_modified", "likes", "trending_score"]
TOKEN = "hf_test_token"


def _api(hub: HubServer, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


@pytest.fixture
def five_repos(hub_store: RepoStore) -> RepoStore:
    """Five public repos with distinct trending/likes/downloads/dates; org/e has another card."""
    specs = [
        ("org/a", 5.0, 10, 100, 1),
        ("org/b", 9.0, 1, 50, 2),
        ("org/c", 1.0, 30, 10, 3),
        ("other/d", 7.0, 20, 300, 4),
        ("other/e", 3.0, 5, 0, 5),
    ]
    for repo_id, trending, likes, downloads, day in specs:
        card = DEFAULT_CARD if repo_id != "other/e" else {"license": "mit", "pipeline_tag": "fill-mask"}
        build_repo(
            hub_store,
            repo_id,
            card=card,
            meta={
                "trending_score": trending,
                "likes": likes,
                "downloads": downloads,
                "created_at": datetime(2026, 1, day, tzinfo=UTC),
            },
        )
    return hub_store


# ---------------------------------------------------------------------------------------------- listing


def test_list_models_pages_in_trending_order(five_repos: RepoStore, hub_factory: HubFactory) -> None:
    hub = hub_factory(five_repos, page_size=2)
    models = list(
        _api(hub).list_models(
            sort="trending_score",
            expand=["trendingScore", "likes", "safetensors", "gated", "sha", "cardData"],
        )
    )
    assert [m.id for m in models] == ["org/b", "other/d", "org/a", "other/e", "org/c"]
    assert [m.trending_score for m in models] == [9.0, 7.0, 5.0, 3.0, 1.0]
    assert hub.requests.count(method="GET", path=r"^/api/models$") == 3  # 2 + 2 + 1 across Link pages
    first = models[0]
    assert first.likes == 1 and first.gated is False
    assert first.safetensors is not None and first.safetensors.total == 200
    assert first.card_data is not None and first.card_data.license == "apache-2.0"
    assert first.downloads is None  # not expanded -> not sent
    assert first.sha == five_repos.refs("org/b")["main"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("likes", ["org/c", "other/d", "org/a", "other/e", "org/b"]),
        ("downloads", ["other/d", "org/a", "org/b", "org/c", "other/e"]),
        ("created_at", ["other/e", "other/d", "org/c", "org/b", "org/a"]),
    ],
)
def test_list_models_sort_keys(
    five_repos: RepoStore, hub_factory: HubFactory, sort: SortKey, expected: list[str]
) -> None:
    hub = hub_factory(five_repos, page_size=3)
    assert [m.id for m in _api(hub).list_models(sort=sort)] == expected


def test_list_models_sort_by_last_modified(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    build_repo(hub_store, "org/old")
    hub_store.commit("org/new", {"a.txt": b"x"}, date=datetime(2026, 3, 1, tzinfo=UTC))
    hub = hub_factory(hub_store)
    assert [m.id for m in _api(hub).list_models(sort="last_modified")] == ["org/new", "org/old"]


def test_list_models_filters_search_author_limit(five_repos: RepoStore, hub_factory: HubFactory) -> None:
    api = _api(hub_factory(five_repos, page_size=2))
    assert {m.id for m in api.list_models(author="other")} == {"other/d", "other/e"}
    assert {m.id for m in api.list_models(filter="license:mit")} == {"other/e"}
    assert {m.id for m in api.list_models(filter=["tiny", "transformers"])} == {
        "org/a",
        "org/b",
        "org/c",
        "other/d",
    }
    assert {m.id for m in api.list_models(pipeline_tag="fill-mask")} == {"other/e"}
    assert {m.id for m in api.list_models(search="ER/")} == {"other/d", "other/e"}
    assert len(list(api.list_models(sort="trending_score", limit=3))) == 3


def test_list_models_default_and_full_fields(five_repos: RepoStore, hub_factory: HubFactory) -> None:
    api = _api(hub_factory(five_repos))
    plain = next(iter(api.list_models(search="org/a")))
    assert plain.tags is not None and "license:apache-2.0" in plain.tags
    assert plain.sha is None and plain.siblings is None
    full = next(iter(api.list_models(search="org/a", full=True, cardData=True, fetch_config=True)))
    assert full.sha == five_repos.refs("org/a")["main"]
    assert full.siblings is not None and {s.rfilename for s in full.siblings} == {
        "README.md",
        "config.json",
        "model.safetensors",
    }
    assert full.config == {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert full.card_data is not None and full.card_data.pipeline_tag == "text-generation"


def test_list_models_rejects_unknown_expand(five_repos: RepoStore, hub_factory: HubFactory) -> None:
    hub = hub_factory(five_repos)
    response = httpx.get(f"{hub.url}/api/models", params={"expand": "bogus"})
    assert response.status_code == 400


# ---------------------------------------------------------------------------------------------- model info


def test_model_info_with_files_metadata(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    weights = tiny_safetensors(seed=3)
    sha = build_repo(hub_store, "org/m", weights=weights, meta={"likes": 4, "downloads": 9, "trending_score": 2.5})
    info = _api(hub_factory(hub_store)).model_info("org/m", files_metadata=True)
    assert info.id == "org/m" and info.author == "org" and info.sha == sha
    assert info.likes == 4 and info.downloads == 9 and info.trending_score == 2.5
    assert info.last_modified == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert info.library_name == "transformers" and info.pipeline_tag == "text-generation"
    assert info.card_data is not None and info.card_data.tags == ["tiny", "test"]
    assert info.safetensors is not None and info.safetensors.parameters == {"F32": 128, "F16": 72}
    siblings = {s.rfilename: s for s in info.siblings or []}
    weights_file = siblings["model.safetensors"]
    assert weights_file.size == len(weights)
    assert weights_file.lfs is not None and weights_file.lfs.sha256 == hashlib.sha256(weights).hexdigest()
    config = siblings["config.json"]
    assert config.lfs is None
    head = hub_store.resolve("org/m")
    assert head is not None
    assert config.blob_id == git_blob_oid(config.size or 0, [hub_store.read_bytes(head, "config.json")])
    assert info.used_storage == sum(s.size or 0 for s in siblings.values())


def test_model_info_expand_only_sends_requested(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    build_repo(hub_store, "org/m", meta={"gated": "auto"})
    info = _api(hub_factory(hub_store)).model_info("org/m", expand=["gated", "safetensors"])
    assert info.gated == "auto" and info.safetensors is not None
    assert info.sha is None and info.card_data is None


def test_sharded_safetensors_are_summed(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    shard1 = tiny_safetensors({"a": ((4, 4), "float32")})
    shard2 = tiny_safetensors({"b": ((10,), "float16")})
    index = {
        "metadata": {"total_size": 36},
        "weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"},
    }
    hub_store.commit(
        "org/sharded",
        {
            "config.json": b"{}",
            "model-1.safetensors": shard1,
            "model-2.safetensors": shard2,
            "model.safetensors.index.json": json.dumps(index).encode(),
        },
    )
    hub = hub_factory(hub_store)
    info = _api(hub).model_info("org/sharded")
    assert info.safetensors is not None
    assert info.safetensors.parameters == {"F32": 16, "F16": 10} and info.safetensors.total == 26
    meta = _api(hub).get_safetensors_metadata("org/sharded")
    assert meta.sharded and meta.parameter_count == {"F32": 16, "F16": 10}


# ---------------------------------------------------------------------------------------------- downloads


def test_download_snapshot_and_request_log(hub_store: RepoStore, hub_factory: HubFactory, hf_cache: Path) -> None:
    weights = tiny_safetensors(seed=1)
    sha = build_repo(hub_store, "org/m", weights=weights, files={"sub/dir/extra.txt": b"nested"})
    hub = hub_factory(hub_store)
    path = hf_hub_download("org/m", "model.safetensors", endpoint=hub.url, cache_dir=hf_cache, token=False)
    assert Path(path).read_bytes() == weights
    assert f"/snapshots/{sha}/" in path
    snapshot = Path(snapshot_download("org/m", endpoint=hub.url, cache_dir=hf_cache, token=False))
    assert (snapshot / "sub" / "dir" / "extra.txt").read_bytes() == b"nested"
    assert hub.requests.bytes_by_repo()["org/m"] >= len(weights)
    assert hub.requests.count(method="GET", path=r"/resolve/.*/model\.safetensors$") == 1  # cached afterwards


def test_revisions_keep_old_content(hub_store: RepoStore, hub_factory: HubFactory, hf_cache: Path) -> None:
    first = hub_store.commit("org/m", {"config.json": b'{"v": 1}'}, message="one")
    second = hub_store.commit(
        "org/m", {"config.json": b'{"v": 2}'}, message="two", date=datetime(2026, 2, 1, tzinfo=UTC)
    )
    branch = hub_store.commit("org/m", {"config.json": b'{"v": 3}'}, branch="feature/x")
    assert len({first, second, branch}) == 3
    hub = hub_factory(hub_store)
    api = _api(hub)
    assert api.model_info("org/m").sha == second
    assert api.model_info("org/m", revision=first).sha == first
    assert api.model_info("org/m", revision="feature/x").sha == branch

    def fetch(revision: str | None) -> bytes:
        return Path(
            hf_hub_download(
                "org/m", "config.json", revision=revision, endpoint=hub.url, cache_dir=hf_cache, token=False
            )
        ).read_bytes()

    assert fetch(None) == b'{"v": 2}'
    assert fetch(first) == b'{"v": 1}'
    assert fetch("feature/x") == b'{"v": 3}'
    refs = {b.name: b.target_commit for b in api.list_repo_refs("org/m").branches}
    assert refs == {"main": second, "feature/x": branch}


def test_resolve_headers_and_ranges(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    weights = tiny_safetensors(seed=2)
    sha = build_repo(hub_store, "org/m", weights=weights)
    hub = hub_factory(hub_store)
    url = hf_hub_url("org/m", "model.safetensors", endpoint=hub.url)

    head = httpx.head(url)
    assert head.status_code == 200
    assert head.headers["x-repo-commit"] == sha
    assert head.headers["etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert head.headers["x-linked-etag"] == head.headers["etag"]
    assert head.headers["x-linked-size"] == str(len(weights)) == head.headers["content-length"]
    assert "x-xet-hash" not in head.headers

    first8 = httpx.get(url, headers={"Range": "bytes=0-7"})
    assert first8.status_code == 206 and first8.content == weights[:8]
    assert first8.headers["content-range"] == f"bytes 0-7/{len(weights)}"
    tail = httpx.get(url, headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == weights[-4:]
    clamped = httpx.get(url, headers={"Range": "bytes=8-100000"})
    assert clamped.status_code == 206 and clamped.content == weights[8:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(weights)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(weights)}"

    meta = get_hf_file_metadata(url, token=False)
    assert meta.commit_hash == sha and meta.size == len(weights)
    assert meta.etag == hashlib.sha256(weights).hexdigest()
    config_meta = get_hf_file_metadata(hf_hub_url("org/m", "config.json", endpoint=hub.url), token=False)
    config_bytes = hub_store.read_bytes(hub_store.get_commit("org/m", sha), "config.json")
    assert config_meta.etag == git_blob_oid(len(config_bytes), [config_bytes])


def test_tree_paging_expand_and_paths_info(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    files = {f"d/f{i}.txt": str(i).encode() for i in range(5)}
    first = hub_store.commit("org/t", {**files, "top.txt": b"0"}, message="first\n\nbody")
    second = hub_store.commit(
        "org/t", {"top.txt": b"1"}, replace=False, message="second", date=datetime(2026, 2, 1, tzinfo=UTC)
    )
    hub = hub_factory(hub_store, page_size=2)
    api = _api(hub)
    entries = list(api.list_repo_tree("org/t", recursive=True, expand=True))
    assert [e.path for e in entries] == ["d", *sorted(files), "top.txt"]
    assert hub.requests.count(path=r"/tree/") == 4
    by_path = {e.path: e for e in entries}
    assert by_path["d/f0.txt"].last_commit.oid == first  # type: ignore[union-attr]
    assert by_path["d/f0.txt"].last_commit.title == "first"  # type: ignore[union-attr]
    assert by_path["top.txt"].last_commit.oid == second  # type: ignore[union-attr]
    assert [e.path for e in api.list_repo_tree("org/t")] == ["d", "top.txt"]
    assert [e.path for e in api.list_repo_tree("org/t", path_in_repo="d")][:2] == ["d/f0.txt", "d/f1.txt"]
    infos = api.get_paths_info("org/t", ["d", "top.txt", "missing.txt"], revision=first)
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFolder", "d"), ("RepoFile", "top.txt")]
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree("org/t", path_in_repo="nope"))


# ---------------------------------------------------------------------------------------------- auth, errors


def test_gated_repo_needs_a_token(hub_store: RepoStore, hub_factory: HubFactory, hf_cache: Path) -> None:
    build_repo(hub_store, "org/gated", meta={"gated": "manual"})
    hub = hub_factory(hub_store, tokens=[TOKEN])
    assert _api(hub).model_info("org/gated").gated == "manual"  # metadata stays public, as on the Hub
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "config.json", endpoint=hub.url, cache_dir=hf_cache, token=False)
    path = hf_hub_download("org/gated", "config.json", endpoint=hub.url, cache_dir=hf_cache, token=TOKEN)
    assert json.loads(Path(path).read_text())["model_type"] == "llama"
    hub.deny_gated(TOKEN, "org/gated")
    with pytest.raises(GatedRepoError) as denied:
        hf_hub_download("org/gated", "model.safetensors", endpoint=hub.url, cache_dir=hf_cache, token=TOKEN)
    assert denied.value.response is not None and denied.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as wrong:
        _api(hub, token="hf_wrong").model_info("org/gated")
    assert wrong.value.response.status_code == 401
    assert not isinstance(wrong.value, RepositoryNotFoundError)


def test_private_repo_is_invisible_without_token(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    build_repo(hub_store, "org/public")
    build_repo(hub_store, "org/secret", meta={"private": True})
    hub = hub_factory(hub_store, tokens=[TOKEN])
    assert [m.id for m in _api(hub).list_models()] == ["org/public"]
    assert {m.id for m in _api(hub, TOKEN).list_models()} == {"org/public", "org/secret"}
    with pytest.raises(RepositoryNotFoundError):
        _api(hub).model_info("org/secret")
    with pytest.raises(RepositoryNotFoundError):
        _api(hub).list_repo_tree("org/secret").__iter__().__next__()
    info = _api(hub, TOKEN).model_info("org/secret", expand=["private"])
    assert info.private is True


def test_not_found_variants(hub_store: RepoStore, hub_factory: HubFactory, hf_cache: Path) -> None:
    build_repo(hub_store, "org/m")
    build_repo(hub_store, "org/off", meta={"disabled": True})
    hub = hub_factory(hub_store)
    api = _api(hub)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/m", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/m", "config.json", revision="0" * 40, endpoint=hub.url, cache_dir=hf_cache, token=False)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/m", "missing.bin", endpoint=hub.url, cache_dir=hf_cache, token=False)
    with pytest.raises(EntryNotFoundError):  # a hostile name comes back in X-Error-Message, escaped
        api.get_hf_file_metadata(url=hf_hub_url("org/m", "dir/ünï\ncode名.txt", endpoint=hub.url))
    with pytest.raises(DisabledRepoError):
        api.model_info("org/off")
    assert not api.file_exists("org/m", "missing.bin")
    assert api.file_exists("org/m", "config.json")


# ---------------------------------------------------------------------------------------------- faults


def test_injected_5xx_reaches_the_client_once(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    build_repo(hub_store, "org/m")
    hub = hub_factory(hub_store)
    fault = hub.faults.add(r"^/api/models/org/m$", status=503, times=1)
    with pytest.raises(HfHubHTTPError) as error:
        _api(hub).model_info("org/m")
    assert error.value.response.status_code == 503
    assert _api(hub).model_info("org/m").id == "org/m"  # spent after one hit
    assert fault.hits == 1
    hub.faults.add(r"/resolve/", status=500, times=None, method="HEAD")
    with pytest.raises(HfHubHTTPError) as head_error:
        get_hf_file_metadata(hf_hub_url("org/m", "config.json", endpoint=hub.url), token=False)
    assert head_error.value.response.status_code == 500
    get = httpx.get(hf_hub_url("org/m", "config.json", endpoint=hub.url))
    assert get.status_code == 200  # only HEAD was faulted


def test_injected_429_is_retried_by_the_client(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    build_repo(hub_store, "org/m")
    hub = hub_factory(hub_store)
    hub.faults.add(r"^/api/models$", status=429, retry_after=0, times=2)
    assert [m.id for m in _api(hub).list_models()] == ["org/m"]  # paginate() uses http_backoff
    statuses = [r.status for r in hub.requests.entries() if r.path == "/api/models"]
    assert statuses == [429, 429, 200]
    response = httpx.get(f"{hub.url}/api/models")
    assert response.status_code == 200
    hub.faults.add(r"^/api/models$", status=502, retry_after=7)
    response = httpx.get(f"{hub.url}/api/models")
    assert response.status_code == 502 and response.headers["retry-after"] == "7"


def test_injected_delay_times_out_the_client(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    build_repo(hub_store, "org/m")
    hub = hub_factory(hub_store)
    hub.faults.add(r"^/api/models/org/m$", status=None, delay=1.5)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{hub.url}/api/models/org/m", timeout=0.3)
    assert httpx.get(f"{hub.url}/api/models/org/m", timeout=5).status_code == 200


# ---------------------------------------------------------------------------------------------- hostile repos


def test_hostile_files_never_crash_the_server(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    bomb = (
        "---\na: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "---\n"
    )
    cases = {
        "org/bad-yaml": {"README.md": b"---\nlicense: [unclosed\n---\n", "config.json": b"{not json"},
        "org/bomb": {"README.md": bomb.encode(), "config.json": b"[1, 2]"},
        "org/bad-st": {
            "model.safetensors": (2**60).to_bytes(8, "little") + b"{}",
            "README.md": b"no front matter",
        },
        "org/bad-st2": {"model.safetensors": (12).to_bytes(8, "little") + b'{"w": {"dtype": 1}}'},
    }
    for repo_id, files in cases.items():
        hub_store.commit(repo_id, files)
    hub = hub_factory(hub_store)
    api = _api(hub)
    for repo_id in cases:
        info = api.model_info(repo_id)
        assert info.card_data is None and info.config is None and info.safetensors is None, repo_id
    assert len(list(api.list_models(expand=["cardData", "config", "safetensors"]))) == len(cases)


def test_admin_endpoints_control_faults_and_log(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    build_repo(hub_store, "org/m")
    hub = hub_factory(hub_store)
    added = httpx.post(f"{hub.url}/_devstack/faults", json={"pattern": "^/api/models/org/m$", "status": 500})
    assert added.status_code == 200 and added.json()[0]["status"] == 500
    assert httpx.get(f"{hub.url}/api/models/org/m").status_code == 500
    log = httpx.get(f"{hub.url}/_devstack/requests").json()
    assert log["requests"][-1]["status"] == 500 and log["requests"][-1]["fault"] is True
    assert httpx.post(f"{hub.url}/_devstack/faults", json={"status": 500}).status_code == 400
    httpx.delete(f"{hub.url}/_devstack/faults")
    assert hub.faults.list() == []


# ---------------------------------------------------------------------------------------------- process mode


@pytest.mark.integration
def test_module_entry_point_serves_by_pid(hub_store: RepoStore, tmp_path: Path) -> None:
    sha = build_repo(hub_store, "org/m")
    port = free_port()
    proc = start_process(
        "hub-server",
        [
            sys.executable,
            "-m",
            "devstack.hub_server",
            "--root",
            str(hub_store.root),
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--page-size",
            "1",
        ],
        log_path=tmp_path / "hub.log",
        pid_path=tmp_path / "hub.pid",
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        url = f"http://{LOOPBACK}:{port}"
        wait_for_http(f"{url}/_devstack/health", timeout=30)
        assert HfApi(endpoint=url, token=TOKEN).model_info("org/m").sha == sha
        httpx.post(f"{url}/_devstack/faults", json={"pattern": "^/api/models/org/m$", "status": 503})
        with pytest.raises(HfHubHTTPError):
            HfApi(endpoint=url, token=False).model_info("org/m")
        statuses = [r["status"] for r in httpx.get(f"{url}/_devstack/requests").json()["requests"]]
        assert statuses == [200, 503]
    finally:
        proc.stop()
    assert not proc.alive(), proc.log_tail()


def test_damaged_store_answers_500_and_keeps_serving(hub_store: RepoStore, hub_factory: HubFactory) -> None:
    sha = build_repo(hub_store, "org/broken")
    build_repo(hub_store, "org/fine", card=None)
    (hub_store.root / "repos" / "org" / "broken" / "commits" / f"{sha}.json").write_text("{truncated")
    api = _api(hub_factory(hub_store))
    with pytest.raises(HfHubHTTPError) as error:
        api.model_info("org/broken")
    assert error.value.response.status_code == 500
    assert api.model_info("org/fine").id == "org/fine"
