"""registry/hub.py against the Hub test server, through the real huggingface_hub client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.hub_server import HubServer
from devstack.repostore import RepoStore
from registry.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HubAuthError,
    HubRateLimitedError,
    HubResponseError,
    HubUnavailableError,
    HubUnreachableError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from registry.hub import HfHubSource
from registry.identifiers import InvalidIdentifierError
from registry.net import free_port
from registry.schema import ModelRef
from registry.settings import HubSettings
from tests.fixtures.hub import build_repo, tiny_safetensors

TOKEN = "hf_test_token"


class SleepLog:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def store(hub_store: RepoStore) -> RepoStore:
    build_repo(hub_store, "org/hot", meta={"trending_score": 90.0, "likes": 10})
    build_repo(hub_store, "org/warm", meta={"trending_score": 50.0})
    build_repo(hub_store, "org/cold", meta={"trending_score": 5.0})
    build_repo(hub_store, "org/gated", meta={"trending_score": 40.0, "gated": "manual"})
    return hub_store


@pytest.fixture
def hub(store: RepoStore, hub_factory: Callable[..., HubServer]) -> HubServer:
    return hub_factory(store, tokens=[TOKEN], page_size=2)


def source_for(hub: HubServer, sleep: SleepLog | None = None, **settings: object) -> HfHubSource:
    options: dict[str, object] = {"endpoint": hub.url, "max_retries": 2, "backoff_s": 0.01, "timeout_s": 5.0}
    options.update(settings)
    return HfHubSource(HubSettings.model_validate(options), sleep=sleep or SleepLog())


def test_trending_is_in_score_order_across_pages_and_pinned(hub: HubServer, store: RepoStore) -> None:
    listing = source_for(hub).trending(10)
    assert [i.repo_id for i in listing] == ["org/hot", "org/warm", "org/gated", "org/cold"]
    assert listing[0].sha == store.refs("org/hot")["main"]
    assert listing[0].trending_score == 90.0
    assert listing[0].likes == 10


def test_model_info_has_file_sizes_and_lfs_hashes(hub: HubServer, store: RepoStore) -> None:
    info = source_for(hub).model_info("org/hot")
    weights = info.file("model.safetensors")
    assert weights is not None and weights.lfs
    commit = store.resolve("org/hot")
    assert commit is not None
    assert weights.sha256 == commit.files["model.safetensors"].sha256
    assert weights.size == commit.files["model.safetensors"].size
    assert info.license == "apache-2.0"
    assert info.safetensors_total == 200


def test_revisions_stay_pinned_after_an_upstream_push(hub: HubServer, store: RepoStore) -> None:
    source = source_for(hub)
    ref = source.model_info("org/hot").ref()
    new_sha = build_repo(store, "org/hot", weights=tiny_safetensors(seed=7), message="retrain")
    assert new_sha != ref.revision
    old = source.read_range(ref, "model.safetensors", 0, 64)
    new = source.read_range(ModelRef(repo_id="org/hot", revision=new_sha), "model.safetensors", 0, 64)
    assert old == store.read_bytes(store.get_commit("org/hot", ref.revision), "model.safetensors")[:64]
    assert source.model_info("org/hot", ref.revision).sha == ref.revision
    assert old[:8] == new[:8]  # same header size, different bytes later on
    assert source.model_info("org/hot").sha == new_sha


def test_range_reads_are_exact_and_counted(hub: HubServer, store: RepoStore) -> None:
    source = source_for(hub)
    ref = source.model_info("org/hot").ref()
    data = store.read_bytes(store.get_commit("org/hot", ref.revision), "model.safetensors")
    assert source.read_range(ref, "model.safetensors", 0, 8) == data[:8]
    assert source.read_range(ref, "model.safetensors", 8, 20) == data[8:28]
    assert source.read_range(ref, "model.safetensors", len(data) - 4, 100) == data[-4:]
    assert source.bytes_read == 8 + 20 + 4
    assert source.bytes_read_for("org/hot") == 32


def test_read_file_refuses_files_over_the_limit(hub: HubServer) -> None:
    source = source_for(hub)
    ref = source.model_info("org/hot").ref()
    assert b"license: apache-2.0" in source.read_file(ref, "README.md", max_bytes=10_000)
    with pytest.raises(Exception, match="larger than 10 bytes"):
        source.read_file(ref, "README.md", max_bytes=10)


def test_download_writes_the_pinned_file(hub: HubServer, store: RepoStore, tmp_path: Path) -> None:
    source = source_for(hub)
    ref = source.model_info("org/hot").ref()
    path = source.download(ref, "config.json", tmp_path)
    assert path.read_bytes() == store.read_bytes(store.get_commit("org/hot", ref.revision), "config.json")


def test_missing_things_are_typed_errors(hub: HubServer) -> None:
    source = source_for(hub)
    with pytest.raises(RepoNotFoundError, match="HF_TOKEN"):
        source.model_info("org/nothing")
    with pytest.raises(RevisionNotFoundError):
        source.model_info("org/hot", "0" * 40)
    ref = source.model_info("org/hot").ref()
    with pytest.raises(EntryNotFoundError):
        source.read_range(ref, "nope.safetensors", 0, 8)


def test_gated_repo_needs_a_token(hub: HubServer) -> None:
    anonymous = source_for(hub)
    ref = anonymous.model_info("org/gated").ref()
    with pytest.raises(GatedRepoError, match="HF_TOKEN"):
        anonymous.read_range(ref, "model.safetensors", 0, 8)
    with pytest.raises(GatedRepoError):
        anonymous.download(ref, "config.json", Path("/nonexistent-never-written"))
    authed = source_for(hub, token=TOKEN)
    assert len(authed.read_range(ref, "model.safetensors", 0, 8)) == 8


def test_a_refused_token_is_an_auth_error(hub: HubServer) -> None:
    with pytest.raises(HubAuthError, match="HF_TOKEN"):
        source_for(hub, token="hf_wrong").model_info("org/hot")


def test_429_is_retried_after_the_requested_delay(hub: HubServer) -> None:
    sleeps = SleepLog()
    fault = hub.faults.add(r"^/api/models/org/hot", status=429, retry_after=3, times=2)
    info = source_for(hub, sleeps).model_info("org/hot")
    assert info.repo_id == "org/hot"
    assert fault.hits == 2
    assert sleeps.calls == [3.0, 3.0]


def test_persistent_429_ends_in_a_rate_limit_error(hub: HubServer) -> None:
    sleeps = SleepLog()
    hub.faults.add(r"^/api/models/org/hot", status=429, retry_after=1, times=None)
    with pytest.raises(HubRateLimitedError) as caught:
        source_for(hub, sleeps).model_info("org/hot")
    assert caught.value.retry_after == 1.0
    assert len(sleeps.calls) == 2


def test_5xx_is_retried_with_backoff_then_reported(hub: HubServer) -> None:
    sleeps = SleepLog()
    ref = source_for(hub).model_info("org/hot").ref()
    hub.faults.add(r"/resolve/", status=503, times=None)
    with pytest.raises(HubUnavailableError, match="HTTP 503"):
        source_for(hub, sleeps).read_range(ref, "model.safetensors", 0, 8)
    assert len(sleeps.calls) == 2
    assert sleeps.calls[1] > sleeps.calls[0]


def test_transient_5xx_recovers(hub: HubServer) -> None:
    ref = source_for(hub).model_info("org/hot").ref()
    hub.faults.add(r"/resolve/", status=502, times=1)
    assert len(source_for(hub).read_range(ref, "model.safetensors", 0, 8)) == 8


def test_timeouts_become_unavailable_errors(hub: HubServer) -> None:
    hub.faults.add(r"^/api/models/org/cold", status=None, delay=1.5, times=None)
    with pytest.raises(HubUnavailableError, match="timed out"):
        source_for(hub, timeout_s=0.3, max_retries=1).model_info("org/cold")


def test_a_refused_connection_fails_at_once_without_retries() -> None:
    sleeps = SleepLog()
    source = HfHubSource(
        HubSettings(endpoint=f"http://127.0.0.1:{free_port()}", max_retries=5, backoff_s=1.0), sleep=sleeps
    )
    for call in (lambda: source.model_info("org/hot"), lambda: source.trending(3), source.check_reachable):
        with pytest.raises(HubUnreachableError, match="Connection refused") as caught:
            call()
        assert caught.value.retryable is False
    assert sleeps.calls == []


def test_retries_stop_at_the_deadline_and_are_not_retried_above(hub: HubServer) -> None:
    sleeps = SleepLog()
    hub.faults.add(r"^/api/models/org/hot", status=503, times=None)
    source = source_for(hub, sleeps, max_retries=10, backoff_s=1.0, max_backoff_s=60.0, deadline_s=2.5)
    with pytest.raises(HubUnavailableError, match="HTTP 503") as caught:
        source.model_info("org/hot")
    assert [round(s) for s in sleeps.calls] == [1, 2]  # the next wait (4 s) would pass the 2.5 s deadline
    assert caught.value.retryable is False  # the flows' task retries do not start a second round


def test_an_endpoint_that_is_not_a_hub_is_an_incompatible_answer(hub: HubServer) -> None:
    with pytest.raises(HubResponseError, match=r"is hub\.endpoint a Hub"):
        source_for(hub, endpoint=hub.url + "/not-a-hub").check_reachable()
    source_for(hub).check_reachable()


def test_hostile_ids_and_file_names_never_reach_the_network_or_the_disk(hub: HubServer, tmp_path: Path) -> None:
    source = source_for(hub)
    before = len(hub.requests.entries())
    for repo_id in ("a/b/c", "../../etc/passwd", "org/x\n"):
        with pytest.raises(InvalidIdentifierError):
            source.model_info(repo_id)
    with pytest.raises(InvalidIdentifierError):
        source.model_info("org/hot", "../../x")
    ref = ModelRef(repo_id="org/hot", revision="0" * 40)
    with pytest.raises(InvalidIdentifierError):
        source.download(ref, "../outside.json", tmp_path / "in")
    assert len(hub.requests.entries()) == before
    assert not (tmp_path / "in").exists() and not (tmp_path / "outside.json").exists()
