"""SPDX SBOMs of runtime images: parsed and validated with spdx-tools before they are attached or recorded."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from spdx_tools.spdx.parser.error import SPDXParsingError
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from builders.errors import SbomError
from registry.schema import SbomRef

SPDX_VERSION = "SPDX-2.3"
SPDX_MEDIA_TYPE = "text/spdx+json"
_LICENSE_REF = re.compile(r"LicenseRef-[A-Za-z0-9.\-]+")
_LICENSE_FIELDS = ("licenseConcluded", "licenseDeclared", "licenseInfoFromFiles", "licenseInfoInFiles")


def complete_license_refs(data: bytes) -> bytes:
    """Define every `LicenseRef-` the SBOM uses but does not define, so it is valid SPDX 2.3.

    Trivy defines the references it makes up for non-SPDX licence names, but passes through a reference a package
    declares itself (the NVIDIA CUDA wheels declare `LicenseRef-NVIDIA-Proprietary`) without defining it. Each
    such reference gets a `hasExtractedLicensingInfos` entry saying it is the package's own declaration; nothing
    else changes. A document that needs nothing is returned as it came.
    """
    try:
        raw: dict[str, Any] = json.loads(data)
    except ValueError:
        return data  # validate_spdx reports it
    used: set[str] = set()
    for item in [*raw.get("packages", []), *raw.get("files", []), *raw.get("snippets", [])]:
        for field in _LICENSE_FIELDS:
            value = item.get(field) if isinstance(item, dict) else None
            for text in value if isinstance(value, list) else [value]:
                used.update(_LICENSE_REF.findall(text) if isinstance(text, str) else ())
    defined = {str(e.get("licenseId")) for e in raw.get("hasExtractedLicensingInfos", []) if isinstance(e, dict)}
    missing = sorted(used - defined)
    if not missing:
        return data
    raw.setdefault("hasExtractedLicensingInfos", []).extend(
        {
            "licenseId": ref,
            "name": ref.removeprefix("LicenseRef-"),
            "extractedText": f"The package declares its licence as {ref}; the licence text is not in the "
            "package metadata the scanner read (see the package's own distribution terms).",
        }
        for ref in missing
    )
    return json.dumps(raw, separators=(",", ":")).encode()


def validate_spdx(data: bytes, *, reference: str = "") -> SbomRef:
    """Parse and validate an SPDX 2.3 JSON document; returns its `SbomRef` (digest, package count).

    Raises `SbomError` naming the first problems when the document is not valid SPDX 2.3.
    """
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise SbomError("the SBOM is not JSON; re-run the scan with --format spdx-json") from exc
    if not isinstance(raw, dict) or raw.get("spdxVersion") != SPDX_VERSION:
        found = raw.get("spdxVersion") if isinstance(raw, dict) else None
        raise SbomError(f"the SBOM is {found!r}, expected {SPDX_VERSION}")
    try:
        document = JsonLikeDictParser().parse(raw)  # type: ignore[no-untyped-call]
    except SPDXParsingError as exc:
        problems = "; ".join(str(m) for m in exc.get_messages()[:5])  # type: ignore[no-untyped-call]
        raise SbomError(f"the SBOM does not parse as SPDX: {problems}") from exc
    messages = validate_full_spdx_document(document, SPDX_VERSION)
    if messages:
        problems = "; ".join(m.validation_message for m in messages[:5])
        raise SbomError(f"the SBOM is not valid {SPDX_VERSION} ({len(messages)} problem(s)): {problems}")
    return SbomRef(
        format="spdx-json",
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        reference=reference,
        packages=len(document.packages),
    )
