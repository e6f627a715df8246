"""SBOM completion: a licence reference a package declares itself (NVIDIA's CUDA wheels) gets its SPDX definition."""

from __future__ import annotations

import json

import pytest

from builders.errors import SbomError
from builders.sbom import complete_license_refs, validate_spdx


def _document(license_id: str) -> dict[str, object]:
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "image",
        "documentNamespace": "http://example.invalid/spdx/image",
        "creationInfo": {"created": "2026-11-30T00:00:00Z", "creators": ["Tool: trivy-0.76.0"]},
        "packages": [
            {
                "SPDXID": "SPDXRef-Package-1",
                "name": "nvidia-cublas",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "licenseConcluded": license_id,
                "licenseDeclared": license_id,
            }
        ],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": "SPDXRef-Package-1",
            }
        ],
    }


def test_an_undefined_license_ref_is_defined_and_the_sbom_validates() -> None:
    data = json.dumps(_document("LicenseRef-NVIDIA-Proprietary")).encode()
    with pytest.raises(SbomError, match="LicenseRef-NVIDIA-Proprietary"):
        validate_spdx(data)
    completed = complete_license_refs(data)
    assert validate_spdx(completed).packages == 1
    (extracted,) = json.loads(completed)["hasExtractedLicensingInfos"]
    assert extracted["licenseId"] == "LicenseRef-NVIDIA-Proprietary" and "declares" in extracted["extractedText"]
    assert json.loads(completed)["packages"] == json.loads(data)["packages"]  # nothing else changes


def test_a_complete_sbom_is_returned_as_it_came() -> None:
    data = json.dumps(_document("MIT")).encode()
    assert complete_license_refs(data) is data
