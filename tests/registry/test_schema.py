"""The shared records: every one round-trips through JSON unchanged, is frozen, and rejects bad identities."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

import registry.schema as schema
import registry.verification_records as vr
from registry.derived_records import DerivedArtifacts, DerivedGguf
from registry.schema import (
    SCHEMA_VERSION,
    BenchmarkMetrics,
    Candidate,
    CandidateSource,
    CatalogEntry,
    CheckStatus,
    ConformanceCheck,
    ConformanceReport,
    Decision,
    DeploymentTemplate,
    EntryStatus,
    Finding,
    LatencyStats,
    LicenseReference,
    MemoryEstimate,
    ModelRef,
    Provenance,
    PublishedTemplate,
    Record,
    RegionCopy,
    RunSummary,
    RuntimeImage,
    SbomRef,
    ScanSummary,
    ScreeningReport,
    Severity,
    StagedFile,
    StagedWeights,
    StageName,
    StageOutcome,
    StageResult,
    ValidationResult,
    ValidationVerdict,
    Verdict,
    model_slug,
)
from tests.fixtures.catalog import (
    sample_entry,
    sample_metrics,
    sample_ref,
    sample_signature,
    sample_staged,
    sample_template,
    sha64,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, 250_000, tzinfo=UTC)
REF = sample_ref("Qwen/Qwen3-0.6B")
IMAGE_DIGEST = f"sha256:{sha64('vllm-image')}"


def _conformance() -> ConformanceReport:
    return ConformanceReport(
        version="2026.11",
        base_url="http://127.0.0.1:8000/v1",
        model=REF.repo_id,
        checks=(
            ConformanceCheck(name="chat-basic", status=CheckStatus.PASS),
            ConformanceCheck(
                name="tool-calls",
                status=CheckStatus.FAIL,
                detail="expected a tool call, got plain text",
                evidence={
                    "request": {
                        "messages": [{"role": "user", "content": "weather?"}],
                        "tools": [{"type": "function"}],
                    },
                    "response": {"choices": [{"message": {"content": "It is sunny."}}]},
                    "status": 200,
                    "latency_s": 0.42,
                    "stream": False,
                    "missing": None,
                },
            ),
            ConformanceCheck(name="embeddings", status=CheckStatus.SKIP, detail="chat model"),
        ),
        started_at=T0,
    )


def _image() -> RuntimeImage:
    return RuntimeImage(
        runtime="vllm",
        version="0.11.0",
        reference=f"127.0.0.1:5000/vllm:0.11.0-{sha64('recipe')[:12]}",
        digest=IMAGE_DIGEST,
        recipe_digest=sha64("recipe"),
        sbom=SbomRef(digest=f"sha256:{sha64('sbom')}", reference="127.0.0.1:5000/vllm:sbom", packages=412),
        scan=ScanSummary(
            scanner_version="0.76.0",
            db_updated_at=T0 - timedelta(days=1),
            vulnerabilities={"CRITICAL": 0, "HIGH": 3, "MEDIUM": 17},
            blocking=(),
            allowed=("CVE-2025-12345",),
            secrets=0,
            denied_licenses=(),
            passed=True,
            scanned_at=T0,
        ),
        signature=sample_signature(IMAGE_DIGEST, f"127.0.0.1:5000/vllm:{IMAGE_DIGEST.replace(':', '-')}.sig"),
        built_at=T0,
    )


def _validation() -> ValidationResult:
    return ValidationResult(
        template=sample_template(REF, 40),
        image_digest=IMAGE_DIGEST,
        weights_signature_digest=f"sha256:{sha64('weights-sig')}",
        conformance=_conformance(),
        benchmark=(
            sample_metrics("chat-short"),
            BenchmarkMetrics(profile="chat-long", rate=2.5, requests=64),
        ),
        verdict=ValidationVerdict.PASSED,
        reason="every gate held",
        accepted_deviations=("tool-calls",),
        flow_run_id="0f3c9a3e-0000-4000-8000-000000000001",
        started_at=T0,
        finished_at=T0 + timedelta(minutes=12),
    )


def _decision() -> schema.ReviewDecision:
    return schema.ReviewDecision(
        decision_id="run-0f3c9a3e-0000-4000-8000-000000000003",
        scope=schema.ReviewScope(
            ref=REF,
            license_expression="LicenseRef-llama3",
            license_file_sha256=sha64("l"),
            finding_codes=("license.needs-review",),
        ),
        verdict=schema.ReviewVerdict.APPROVE,
        reviewer="ada",
        reason="Llama 3 community licence: redistribution with attribution is fine for the catalog",
        decided_at=T0,
        flow_run_id="0f3c9a3e-0000-4000-8000-000000000003",
    )


def _derived(staged: StagedWeights) -> DerivedArtifacts:
    """GGUF files derived from `staged`: the f16 reference and a q4_k_m whose 576-wide rows fell back to q5_0."""
    assert staged.signature is not None
    ggufs = tuple(
        DerivedGguf(
            quantization=quant,
            file=StagedFile(name=f"{REF.name}-{quant}.gguf", size=size, sha256=sha64(quant)),
            prefix=f"{REF.org}/{REF.name}/{REF.revision}.gguf/{quant}/",
            signature=staged.signature.model_copy(update={"signature_digest": "sha256:" + sha64(quant + ".sig")}),
            fallbacks=fallbacks,
        )
        for quant, size, fallbacks in (("f16", 270_000_000, {}), ("q4_k_m", 105_000_000, {"q5_0": 60}))
    )
    return DerivedArtifacts(
        ref=REF,
        source_signature_digest=staged.signature.signature_digest,
        image_digest=IMAGE_DIGEST,
        key=sha64("derive-key"),
        ggufs=ggufs,
    )


def _examples() -> dict[type[Record], Record]:
    """One realistic, fully populated instance of every record in registry/schema.py."""
    latency = LatencyStats(mean=0.21, p50=0.2, p90=0.31, p99=0.52)
    staged = sample_staged(REF)
    entry = sample_entry(REF, policy_digest=sha64("policy"))
    examples: list[Record] = [
        REF,
        Candidate(
            ref=REF,
            rank=1,
            source=CandidateSource.TRENDING,
            trending_score=87.25,
            likes=3_120,
            downloads=1_250_000,
            pipeline_tag="text-generation",
            library_name="transformers",
            license="apache-2.0",
            gated=False,
            private=False,
            tags=("transformers", "safetensors", "qwen3", "text-generation", "conversational"),
            parameters=596_049_920,
            last_modified=T0 - timedelta(days=3),
            decision=Decision.SKIPPED,
            reason="already curated at this policy digest",
            discovered_at=T0,
        ),
        Finding(
            scanner="pickle",
            code="pickle-global",
            severity=Severity.CRITICAL,
            message="os.system",
            path="a.bin",
        ),
        entry.license,
        ScreeningReport(
            ref=REF,
            verdict=Verdict.NEEDS_REVIEW,
            findings=(
                Finding(scanner="license", code="license-review", severity=Severity.MEDIUM, message="read it"),
                Finding(
                    scanner="config",
                    code="remote-code",
                    severity=Severity.HIGH,
                    message="auto_map",
                    path="c.json",
                ),
            ),
            license=LicenseReference(spdx="LicenseRef-other", declared="other", file="LICENSE", file_sha256=sha64("l")),
            review=("licence 'other'",),
            weight_formats=("safetensors", "gguf"),
            policy_digest=sha64("policy"),
            bytes_read=2_097_152,
            screened_at=T0,
            reviews=(_decision(),),
        ),
        _decision(),
        _decision().scope,
        _image().scan,  # type: ignore[list-item]
        sample_signature(IMAGE_DIGEST, "127.0.0.1:5000/vllm:sig"),
        _image().sbom,  # type: ignore[list-item]
        _image(),
        staged.files[0],
        staged.regions["eastus"],
        staged,
        _derived(staged),
        _derived(staged).ggufs[1],
        sample_template(REF).memory,  # type: ignore[list-item]
        sample_template(REF),
        _conformance().checks[1],
        _conformance(),
        latency,
        sample_metrics(),
        _validation(),
        entry.templates[0],
        entry.provenance,
        entry,
        vr.VerificationCheck(name="weights:eastus", passed=False, detail="model.safetensors was altered"),
        vr.VerificationReport(
            entry_id=entry.id,
            repo_id=entry.model.repo_id,
            revision=entry.model.revision,
            entry_digest=f"sha256:{sha64('entry')}",
            key_id=sha64("key"),
            key_source="catalog-export/keys/key.pem",
            checks=(vr.VerificationCheck(name="entry-signature", passed=True, detail="signed"),),
            ok=True,
            verified_at=T0,
            approvals=(_decision(),),
        ),
        StageResult(
            ref=REF,
            stage=StageName.VALIDATE,
            outcome=StageOutcome.FAILED,
            reason="conformance: tool-calls failed",
            policy_digest=sha64("policy"),
            run_id="20261123T120000Z-0123456789",
            payload=json.loads(_validation().model_dump_json()),
            recorded_at=T0,
        ),
        RunSummary(
            run_id="20261123T120000Z-0123456789",
            kind="weekly",
            flow_run_id="0f3c9a3e-0000-4000-8000-000000000001",
            started_at=T0,
            finished_at=T0 + timedelta(hours=2),
            candidates=20,
            selected=6,
            status="completed",
            outcomes={"published": 3, "unchanged": 1, "failed": 2},
        ),
        schema.CellInputs(
            revision=REF.revision,
            weights_signature_digest=f"sha256:{sha64('sig')}",
            image_digest=f"sha256:{sha64('image')}",
            runtime_version="5.23.0",
            policy_digest=sha64("cell policy"),
            suite_version="1.0.0",
            check_versions={"chat.shape": 1, "chat.stop": 2},
            accepted_deviations={"chat.stop": "==5.23.0: transformers serve keeps the stop string"},
        ),
        schema.ModelRow(
            run_id="20261123T120000Z-0123456789",
            repo_id=REF.repo_id,
            revision=REF.revision,
            stage="stage",
            outcome=schema.ModelOutcome.FAILED,
            reason="stage: 503 from the Hub for model.safetensors after 4 retries",
            stages={"stage": "failed: 503 from the Hub for model.safetensors after 4 retries"},
            flow_run_id="0f3c9a3e-0000-4000-8000-000000000002",
            attempts=2,
            updated_at=T0,
        ),
    ]
    return {type(example): example for example in examples}


EXAMPLES = _examples()
CLASSES: list[type[Record]] = sorted(EXAMPLES, key=lambda cls: cls.__qualname__)


def _record_classes() -> set[type[Record]]:
    return {
        obj
        for obj in vars(schema).values()
        if inspect.isclass(obj) and issubclass(obj, Record) and obj is not Record and obj.__module__ == schema.__name__
    }


def test_every_record_has_an_example() -> None:
    missing = {cls.__name__ for cls in _record_classes()} - {cls.__name__ for cls in EXAMPLES}
    assert not missing, f"add a realistic example of {sorted(missing)} to tests/registry/test_schema.py::_examples"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: getattr(c, "__name__", repr(c)))
def test_json_round_trip(cls: type[Record]) -> None:
    record = EXAMPLES[cls]
    assert type(record) is cls
    text = record.model_dump_json()
    loaded = cls.model_validate_json(text)
    assert loaded == record
    assert loaded.model_dump_json() == text
    # The JSON form is plain JSON (what `--json` prints and the catalog stores), and loads from a dict too.
    assert cls.model_validate(json.loads(text)) == record


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: getattr(c, "__name__", repr(c)))
def test_frozen_and_strict(cls: type[Record]) -> None:
    record = EXAMPLES[cls]
    field = next(iter(cls.model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(record, field, getattr(record, field))
    data = json.loads(record.model_dump_json())
    data["not_a_field"] = 1
    with pytest.raises(ValidationError, match="not_a_field"):
        cls.model_validate(data)


def test_nested_values_survive_exactly() -> None:
    entry = EXAMPLES[CatalogEntry]
    assert isinstance(entry, CatalogEntry)
    loaded = CatalogEntry.model_validate_json(entry.model_dump_json())
    assert loaded.templates[0].template.memory == entry.templates[0].template.memory
    assert loaded.weights.regions["westeurope"].verified_at == datetime(2026, 11, 20, 3, 4, 5, 123456, tzinfo=UTC)
    assert loaded.provenance.timestamps["screened"].tzinfo is not None
    assert loaded.status is EntryStatus.PUBLISHED
    assert loaded.schema_version == SCHEMA_VERSION
    validation = EXAMPLES[ValidationResult]
    assert isinstance(validation, ValidationResult)
    again = ValidationResult.model_validate_json(validation.model_dump_json())
    assert again.conformance is not None
    assert again.conformance.checks[1].evidence["request"]["tools"] == [{"type": "function"}]
    assert again.conformance.failed == ("tool-calls",)
    assert again.benchmark[1].ttft_s is None
    stage = EXAMPLES[StageResult]
    assert isinstance(stage, StageResult)
    assert ValidationResult.model_validate(stage.payload) == validation


@pytest.mark.parametrize(
    "repo_id",
    [
        "Qwen/Qwen3-0.6B",
        "meta-llama/Llama-3.2-1B-Instruct",
        "BAAI/bge-small-en-v1.5",
        "a/b",
        "org_1/model.v2",
    ],
)
def test_model_ref_accepts_hub_ids(repo_id: str) -> None:
    ref = ModelRef(repo_id=repo_id, revision="0123456789abcdef0123456789abcdef01234567")
    assert ref.org == repo_id.split("/", maxsplit=1)[0]
    assert ref.name == repo_id.split("/")[1]
    assert str(ref) == f"{repo_id}@0123456789ab"


@pytest.mark.parametrize(
    "repo_id",
    [
        "no-slash",
        "too/many/parts",
        "../etc",
        "org/..",
        "org/a..b",
        "/leading",
        "org/",
        "-org/model",
        "org/-model",
        "org/mo del",
        "org/model\n",
        "org/mödel",
        "o" * 97 + "/model",
        "",
    ],
)
def test_model_ref_rejects_bad_repo_ids(repo_id: str) -> None:
    with pytest.raises(ValidationError, match="not a Hub model id"):
        ModelRef(repo_id=repo_id, revision="0" * 40)


@pytest.mark.parametrize(
    "revision",
    [
        "main",
        "0" * 40 + "\n",
        "0" * 39,
        "0" * 41,
        "A" * 40,
        "g" * 40,
        "0123456789abcdef" * 4,
        " " + "0" * 39,
        "",
    ],
)
def test_model_ref_rejects_non_sha_revisions(revision: str) -> None:
    with pytest.raises(ValidationError, match="40-hex commit sha"):
        ModelRef(repo_id="Qwen/Qwen3-0.6B", revision=revision)


def test_other_validators() -> None:
    with pytest.raises(ValidationError, match="unique"):
        StagedWeights(ref=REF, files=(StagedFile(name="a", size=1, sha256="0" * 64),) * 2)
    with pytest.raises(ValidationError):
        StagedFile(name="a", size=1, sha256="not-a-sha")
    with pytest.raises(ValidationError):
        SbomRef.model_validate({"format": "xml", "digest": "sha256:0"})
    assert Severity.CRITICAL.rank > Severity.HIGH.rank > Severity.INFO.rank
    assert model_slug("Qwen/Qwen3-32B") == "qwen--qwen3-32b"
    assert RegionCopy(region="eastus", container_url="u").verified_at is None
    assert _image().pinned == f"127.0.0.1:5000/vllm@{IMAGE_DIGEST}"
    assert Provenance().policy_digest == ""
    assert PublishedTemplate(template=sample_template(REF), image="x").metrics == ()
    assert DeploymentTemplate(runtime="tei", accelerator_family="cpu", context_length=512, id="x").count == 1
    assert (
        MemoryEstimate(weights_bytes=1, kv_cache_bytes=1, reserve_bytes=1, total_bytes=3, capacity_bytes=4).formula
        == ""
    )
