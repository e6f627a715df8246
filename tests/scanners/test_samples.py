"""Every sample repository gets the verdict and codes `devstack/samples/expectations.py` promises, through the
real client against the Hub test server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.hub.control import peak_concurrency
from devstack.hub_server import HubServer
from devstack.samples import SampleSet
from registry import finding_codes as codes
from registry.hub import HfHubSource
from registry.schema import Verdict
from registry.settings import load_settings
from scanners.screen import screen_repo

pytestmark = pytest.mark.integration

TOKEN = "hf_samples_token_0123456789"


@pytest.fixture(scope="module")
def sample_hub(sample_set: SampleSet) -> Iterator[HubServer]:
    with HubServer(sample_set.store(), tokens=[TOKEN]) as hub:
        yield hub


def test_every_sample_gets_its_expected_verdict_and_codes(sample_set: SampleSet, sample_hub: HubServer) -> None:
    settings = load_settings(hub={"endpoint": sample_hub.url, "max_retries": 0})
    source = HfHubSource(settings.hub)
    try:
        for sample in sample_set.samples:
            report = screen_repo(source, sample.repo_id, sample.revision, settings)
            explained = f"{sample.repo_id}:\n" + "\n".join(f"  {f.code}: {f.message}" for f in report.findings)
            assert report.verdict is sample.expected_verdict, explained
            assert set(sample.expected_codes) <= set(report.codes), explained
            assert report.ref.revision == sample.revision
            if sample.expected_verdict is Verdict.ACCEPTED:
                assert report.license.spdx, explained
                assert "safetensors" in report.weight_formats
            # Headers and small files only: a small fraction of a repository with real weights.
            total = (
                sum(f.size or 0 for f in source.model_info(sample.repo_id, sample.revision).files)
                if not sample.private
                else 0
            )
            if sample.real:
                assert report.bytes_read < total / 20, (sample.repo_id, report.bytes_read, total)
    finally:
        source.close()


def test_gated_and_private_samples_with_a_token(sample_set: SampleSet, sample_hub: HubServer) -> None:
    settings = load_settings(hub={"endpoint": sample_hub.url, "max_retries": 0, "token": TOKEN})
    source = HfHubSource(settings.hub)
    try:
        for sample in sample_set.samples:
            if not (sample.gated or sample.private):
                continue
            report = screen_repo(source, sample.repo_id, sample.revision, settings)
            assert codes.NEEDS_TOKEN not in report.codes and codes.REPO_NOT_FOUND not in report.codes
            assert report.verdict is Verdict.ACCEPTED, [f.message for f in report.findings]
    finally:
        source.close()


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_screening_reads_at_most_parallel_reads_small_files_at_once(
    sample_set: SampleSet, sample_hub: HubServer, parallel: int
) -> None:
    """Each read waits out the Hub's latency (here 100 ms): read one after another, they add it up."""
    sample = next(s for s in sample_set.samples if s.repo_id == "curation-samples/tiny-llama-chat")
    settings = load_settings(hub={"endpoint": sample_hub.url, "max_retries": 0, "parallel_reads": parallel})
    sample_hub.faults.add("/resolve/", status=None, delay=0.1, times=None, message="latency")
    sample_hub.requests.clear()
    source = HfHubSource(settings.hub)
    try:
        report = screen_repo(source, sample.repo_id, sample.revision, settings)
    finally:
        source.close()
        sample_hub.faults.clear()
    assert report.verdict is sample.expected_verdict
    # the server logs a request as finished a little after the client has its answer and starts the next one
    reads = [
        (r.started_at, r.finished_at - 0.02)
        for r in sample_hub.requests.entries()
        if "/resolve/" in r.path and r.range is None and not r.path.endswith(".safetensors")
    ]
    assert len(reads) >= 4  # card, licence, configs
    assert peak_concurrency(reads) == min(parallel, len(reads))
