"""Weight download + verification against the Hub test server, and the tensor checks against config.json."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.hub_server import HubServer
from devstack.repostore import RepoStore
from devstack.samples import SampleSet
from registry.errors import HubUnavailableError
from registry.hub import HfHubSource, RepoFile, RepoInfo
from registry.settings import HubSettings, ScreeningSettings
from tests.fixtures.hub import build_repo, tiny_safetensors
from validators.weights import (
    WeightsRejectedError,
    check_tensors,
    download_weights,
    select_files,
    verify_file,
)

SCREENING = ScreeningSettings()


@pytest.fixture
def samples_hub(sample_set: SampleSet, hub_factory: Callable[..., HubServer]) -> Iterator[HfHubSource]:
    hub = hub_factory(sample_set.store())
    source = HfHubSource(HubSettings(endpoint=hub.url, max_retries=0))
    yield source
    source.close()


def _fetch(source: HfHubSource, repo_id: str, dest: Path) -> RepoInfo:
    info = source.model_info(repo_id)
    download_weights(source, info, select_files(info), dest)
    return info


@pytest.mark.parametrize(
    "repo_id",
    [
        "curation-samples/tiny-llama-chat",
        "curation-samples/tiny-qwen2-chat",
        "sentence-transformers/all-MiniLM-L6-v2",
    ],
)
def test_sample_models_download_verified_and_pass_tensor_checks(
    samples_hub: HfHubSource, tmp_path: Path, repo_id: str
) -> None:
    info = samples_hub.model_info(repo_id)
    files = select_files(info)
    staged = download_weights(samples_hub, info, files, tmp_path / "m")
    assert [f.name for f in staged] == [f.path for f in files]
    assert sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()) == [
        f.name for f in staged
    ]
    assert not any(name.endswith((".bin", ".pt", ".py")) for name in (f.name for f in staged))
    report = check_tensors(tmp_path / "m", info, SCREENING)
    assert report.findings == ()
    assert report.parameters == info.safetensors_total
    assert report.tensors > 0


def test_config_disagreeing_with_tensors_is_rejected(samples_hub: HfHubSource, tmp_path: Path) -> None:
    info = _fetch(samples_hub, "curation-samples/tiny-llama-chat", tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(num_hidden_layers=config["num_hidden_layers"] + 1, intermediate_size=7)
    config_path.write_text(json.dumps(config))
    report = check_tensors(tmp_path / "m", info, SCREENING)
    codes = {f.code for f in report.blocking}
    assert {"weights.layer-count", "weights.shape-mismatch", "weights.missing-tensor"} <= codes


def test_parameter_count_disagreeing_with_hub_metadata_is_rejected(samples_hub: HfHubSource, tmp_path: Path) -> None:
    info = _fetch(samples_hub, "curation-samples/tiny-qwen2-chat", tmp_path / "m")
    assert info.safetensors_total
    lying = info.model_copy(update={"safetensors_total": info.safetensors_total * 2})
    report = check_tensors(tmp_path / "m", lying, SCREENING)
    assert [f.code for f in report.blocking] == ["weights.parameters-mismatch"]


def _tiny_repo(store: RepoStore) -> tuple[str, Path]:
    sha = build_repo(store, "org/tiny", weights=tiny_safetensors(seed=5))
    entry = store.get_commit("org/tiny", sha).files["model.safetensors"]
    return sha, store.object_path(entry.sha256)


def test_wrong_lfs_hash_rejects_and_stages_nothing(
    hub_store: RepoStore, hub_factory: Callable[..., HubServer], tmp_path: Path
) -> None:
    sha, blob = _tiny_repo(hub_store)
    data = blob.read_bytes()
    blob.write_bytes(data[:-4] + b"evil")  # same size, different content than the advertised LFS oid
    source = HfHubSource(HubSettings(endpoint=hub_factory(hub_store).url, max_retries=0))
    info = source.model_info("org/tiny", sha)
    with pytest.raises(WeightsRejectedError) as caught:
        download_weights(source, info, select_files(info), tmp_path / "m")
    assert [f.code for f in caught.value.findings] == ["weights.hash-mismatch"]
    assert "LFS oid" in str(caught.value)
    assert not (tmp_path / "m").exists()


def test_truncated_download_is_a_clear_error(
    hub_store: RepoStore, hub_factory: Callable[..., HubServer], tmp_path: Path
) -> None:
    sha, blob = _tiny_repo(hub_store)
    blob.write_bytes(blob.read_bytes()[:-10])  # the server declares the full length, then sends less
    source = HfHubSource(HubSettings(endpoint=hub_factory(hub_store).url, max_retries=0))
    info = source.model_info("org/tiny", sha)
    with pytest.raises(HubUnavailableError, match="org/tiny"):
        download_weights(source, info, select_files(info), tmp_path / "m")
    assert not (tmp_path / "m").exists()
    # The same truncation after a "successful" transfer is caught by the size check.
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"x" * 90)
    entry = RepoFile(path="model.safetensors", size=100, sha256="0" * 64, lfs=True)
    record, findings = verify_file(short, entry)
    assert record is None
    assert [f.code for f in findings] == ["weights.size-mismatch", "weights.hash-mismatch"]


def _info(files: list[RepoFile], **extra: Any) -> RepoInfo:
    return RepoInfo(repo_id="org/m", sha="a" * 40, files=tuple(files), **extra)


def test_file_selection_refuses_unsafe_names_and_repos_without_safetensors() -> None:
    with pytest.raises(WeightsRejectedError) as caught:
        select_files(_info([RepoFile(path="../evil.safetensors", size=1), RepoFile(path="config.json", size=2)]))
    assert "weights.unsafe-name" in {f.code for f in caught.value.findings}
    with pytest.raises(WeightsRejectedError) as caught:
        select_files(_info([RepoFile(path="pytorch_model.bin", size=1), RepoFile(path="config.json", size=2)]))
    assert [f.code for f in caught.value.findings] == ["weights.no-safetensors"]
    chosen = select_files(
        _info(
            [
                RepoFile(path="model.safetensors", size=1),
                RepoFile(path="config.json", size=1),
                RepoFile(path="modeling_evil.py", size=1),
                RepoFile(path="LICENSE", size=1),
            ]
        )
    )
    assert [f.path for f in chosen] == ["LICENSE", "config.json", "model.safetensors"]


def test_hostile_safetensors_header_and_bad_index(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "unknown-arch"}))
    (model / "a.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    (model / "b.safetensors").write_bytes(tiny_safetensors(seed=1))
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.embed.weight": "b.safetensors", "x": "c.safetensors"}})
    )
    report = check_tensors(model, _info([]), SCREENING)
    codes = [f.code for f in report.findings]
    assert "weights.bad-header" in codes
    assert "weights.index-missing-shard" in codes
    assert "weights.index-mismatch" in codes
    assert report.parameters == 200  # b.safetensors only: the hostile header was never parsed
