"""The Trivy scan and the image policy gate: unit tests of the gate, real scans with a planted database."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import docker
import pytest

from devstack.docker_engine import BASE_IMAGE, DockerStack
from devstack.trivydb import Advisory, write_trivy_db
from registry.settings import AllowedCve, ImageSettings
from scanners.image_gate import gate, summary_markdown
from scanners.trivy import TrivyError, TrivyOptions, db_updated_at, scan_image


def _report(*vulns: dict[str, str], secrets: int = 0, licenses: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        "Results": [
            {"Target": "img (debian 12)", "Vulnerabilities": list(vulns)},
            {"Target": "/app/.env", "Secrets": [{"RuleID": "aws-access-key-id"}] * secrets},
            {"Target": "OS Packages", "Licenses": [{"Name": n, "PkgName": "pkg"} for n in licenses]},
        ]
    }


def _vuln(vuln_id: str, severity: str = "CRITICAL", fixed: str = "2.0") -> dict[str, str]:
    return {
        "VulnerabilityID": vuln_id,
        "PkgName": "libx",
        "InstalledVersion": "1.0",
        "FixedVersion": fixed,
        "Severity": severity,
    }


def test_fixable_critical_blocks_unless_allow_listed() -> None:
    report = _report(_vuln("CVE-1"), _vuln("CVE-2", fixed=""), _vuln("CVE-3", severity="HIGH"))
    summary = gate(report, ImageSettings())
    assert not summary.passed
    assert summary.blocking == ("CVE-1",)
    assert summary.vulnerabilities == {"CRITICAL": 2, "HIGH": 1}
    allowed = ImageSettings(allowed_cves=(AllowedCve(id="CVE-1", reason="not reachable in serving"),))
    summary = gate(report, allowed)
    assert summary.passed and summary.allowed == ("CVE-1",)
    assert "not reachable in serving" in summary_markdown("img", summary, {"CVE-1": "not reachable in serving"})


def test_expired_allow_listing_no_longer_counts() -> None:
    policy = ImageSettings(allowed_cves=(AllowedCve(id="CVE-1", reason="r", expires="2026-01-31"),))
    assert gate(_report(_vuln("CVE-1")), policy, today=date(2026, 1, 31)).passed
    assert not gate(_report(_vuln("CVE-1")), policy, today=date(2026, 2, 1)).passed


def test_severities_to_fail_on_come_from_policy() -> None:
    report = _report(_vuln("CVE-3", severity="HIGH"))
    assert gate(report, ImageSettings()).passed
    assert not gate(report, ImageSettings(fail_on_fixable=("CRITICAL", "HIGH"))).passed


def test_secrets_and_denied_licences_always_block() -> None:
    summary = gate(_report(secrets=1), ImageSettings())
    assert not summary.passed and summary.secrets == 1 and summary.blocking == ("secret:aws-access-key-id",)
    summary = gate(_report(licenses=("CC-BY-NC-4.0", "MIT")), ImageSettings(denied_licenses=("CC-BY-NC-4.0",)))
    assert not summary.passed and summary.denied_licenses == ("CC-BY-NC-4.0",)


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrivyError, match="no vulnerability database"):
        scan_image("127.0.0.1:1/x@sha256:" + "0" * 64, TrivyOptions(cache_dir=tmp_path, skip_db_update=True))


# --------------------------------------------------------------------------------------------- real scans


@pytest.fixture(scope="module")
def base_archive(docker_stack: DockerStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The locally made Debian base image as a docker-archive tar (what `trivy --input` reads)."""
    target = tmp_path_factory.mktemp("archive") / "base.tar"
    client = docker.DockerClient(base_url=docker_stack.docker_host)
    try:
        with target.open("wb") as out:
            for chunk in client.images.get(BASE_IMAGE).save(named=True):
                out.write(chunk)
    finally:
        client.close()
    return target


@pytest.mark.integration
@pytest.mark.docker
def test_planted_cve_in_a_real_package_fails_the_gate(base_archive: Path, planted_trivy_cache: Path) -> None:
    options = TrivyOptions(cache_dir=planted_trivy_cache, skip_db_update=True)
    report = scan_image(str(base_archive), options)
    found = {
        (v["VulnerabilityID"], v["PkgName"], v.get("FixedVersion", ""))
        for r in report["Results"]
        for v in r.get("Vulnerabilities") or []
    }
    assert ("CVE-2099-0001", "base-files", "99.0") in found
    assert any(vuln_id == "CVE-2099-0003" and pkg == "bash" for vuln_id, pkg, _ in found)
    assert db_updated_at(options) is not None
    summary = gate(report, ImageSettings())
    assert not summary.passed
    assert summary.blocking == ("CVE-2099-0001",)  # the unfixed CRITICAL is reported, not gating
    assert summary.vulnerabilities["CRITICAL"] == 2
    allowed = ImageSettings(
        allowed_cves=(AllowedCve(id="CVE-2099-0001", reason="test: accepted, base-files carries no code"),)
    )
    assert gate(report, allowed).passed


@pytest.mark.integration
@pytest.mark.docker
def test_clean_database_passes_and_licences_are_reported(base_archive: Path, clean_trivy_cache: Path) -> None:
    report = scan_image(str(base_archive), TrivyOptions(cache_dir=clean_trivy_cache, skip_db_update=True))
    summary = gate(report, ImageSettings(denied_licenses=("CC-BY-NC-4.0",)))
    assert summary.passed and summary.vulnerabilities == {}
    licences = {lic["Name"] for r in report["Results"] for lic in r.get("Licenses") or []}
    assert "GPL-2.0-only" in licences or "GPL-2.0-or-later" in licences
    # Denying a licence the base image really carries fails the gate.
    denied = gate(report, ImageSettings(denied_licenses=tuple(sorted(licences))[:1]))
    assert not denied.passed and denied.denied_licenses


@pytest.mark.integration
@pytest.mark.docker
def test_large_database_buckets_span_overflow_pages(base_archive: Path, tmp_path: Path) -> None:
    """Hundreds of packages and a long advisory: buckets larger than a bbolt page still read correctly."""
    filler = [Advisory(f"CVE-2098-{i:04d}", "debian 12", f"pkg-{i:04d}", fixed_version="1.0") for i in range(400)]
    long_text = "x" * 20_000
    planted = Advisory("CVE-2099-0009", "debian 12", "base-files", fixed_version="99.0", description=long_text)
    write_trivy_db(tmp_path, [*filler, planted])
    assert (tmp_path / "db" / "trivy.db").stat().st_size > 8 * 4096
    report = scan_image(str(base_archive), TrivyOptions(cache_dir=tmp_path, skip_db_update=True))
    found = [v for r in report["Results"] for v in r.get("Vulnerabilities") or []]
    assert [(v["VulnerabilityID"], v["PkgName"]) for v in found] == [("CVE-2099-0009", "base-files")]
    assert found[0]["Description"] == long_text
