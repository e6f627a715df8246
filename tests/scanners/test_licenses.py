from __future__ import annotations

import pytest

from devstack.samples import licenses as texts
from registry import finding_codes as codes
from registry.schema import Verdict
from registry.settings import LicensePolicy, load_settings
from scanners.licenses import identify_text, judge, normalize, scan_licenses


@pytest.fixture(scope="module")
def policy() -> LicensePolicy:
    return load_settings().licenses


@pytest.mark.parametrize(
    ("declared", "name", "expected"),
    [
        ("apache-2.0", None, "Apache-2.0"),
        ("mit", None, "MIT"),
        ("cc-by-nc-4.0", None, "CC-BY-NC-4.0"),
        ("gpl-3.0", None, "GPL-3.0-only"),
        ("llama3", None, "LicenseRef-llama3"),
        ("llama3.1", None, "LicenseRef-llama3.1"),
        ("gemma", None, "LicenseRef-gemma"),
        ("other", "llama3", "LicenseRef-llama3"),
        ("other", "some custom terms", "LicenseRef-other"),
        ("other", None, "LicenseRef-other"),
        (["mit", "apache-2.0"], None, "MIT AND Apache-2.0"),
        ("Apache 2.0", None, "Apache-2.0"),
        ("mit OR cc-by-nc-4.0", None, "MIT OR CC-BY-NC-4.0"),
    ],
)
def test_normalize(declared, name, expected, policy) -> None:
    assert normalize(declared, name, policy).expression == expected


@pytest.mark.parametrize(
    ("expression", "verdict"),
    [
        ("Apache-2.0", Verdict.ACCEPTED),
        ("MIT OR CC-BY-NC-4.0", Verdict.ACCEPTED),
        ("MIT AND CC-BY-NC-4.0", Verdict.REJECTED),
        ("MIT AND LicenseRef-llama3", Verdict.NEEDS_REVIEW),
        ("LicenseRef-llama3 OR CC-BY-NC-4.0", Verdict.NEEDS_REVIEW),
        ("Apache-2.0 WITH LLVM-exception", Verdict.ACCEPTED),
        ("Apache-2.0 WITH LicenseRef-made-up-exception", Verdict.REJECTED),
        ("LicenseRef-never-heard-of-it", Verdict.REJECTED),
        ("(MIT OR GPL-3.0-only) AND BSD-3-Clause", Verdict.ACCEPTED),
    ],
)
def test_judge(expression, verdict, policy) -> None:
    assert judge(expression, policy).verdict is verdict


def test_identify_sample_texts() -> None:
    assert identify_text(texts.APACHE_2_0) == "Apache-2.0"
    assert identify_text(texts.MIT) == "MIT"
    assert identify_text(texts.CC_BY_NC_4_0) == "CC-BY-NC-4.0"
    assert identify_text(texts.LLAMA3_EXCERPT) == "LicenseRef-llama3"
    assert identify_text("SPDX-License-Identifier: MIT OR Apache-2.0\n") == "MIT OR Apache-2.0"
    assert (
        identify_text(
            "Redistribution and use in source and binary forms, with or without modification, are "
            "permitted provided ... Neither the name of the copyright holder"
        )
        == "BSD-3-Clause"
    )
    assert identify_text("You may do whatever the moon allows.") is None


def _codes(card, readme=None, files=None, policy=None):
    result = scan_licenses(card, readme, files or {}, policy or load_settings().licenses)
    return [f.code for f in result.findings], result.reference


def test_allowed_card_with_matching_file_keeps_the_reference(policy) -> None:
    found, ref = _codes({"license": "apache-2.0"}, None, {"LICENSE": texts.APACHE_2_0.encode()}, policy)
    assert found == [codes.LICENSE_ALLOWED]
    assert ref.spdx == "Apache-2.0" and ref.file == "LICENSE" and ref.declared == "apache-2.0"
    assert ref.file_sha256 and len(ref.file_sha256) == 64


def test_mismatch_uses_the_stricter(policy) -> None:
    found, _ = _codes({"license": "mit"}, None, {"LICENSE.txt": texts.CC_BY_NC_4_0.encode()}, policy)
    assert codes.LICENSE_MISMATCH in found and codes.LICENSE_DENIED in found


def test_other_with_link_and_name(policy) -> None:
    card = {"license": "other", "license_name": "llama3", "license_link": "LICENSE"}
    found, ref = _codes(card, None, {"LICENSE": texts.LLAMA3_EXCERPT.encode()}, policy)
    assert found == [codes.LICENSE_REVIEW]
    assert ref.spdx == "LicenseRef-llama3" and ref.url == "LICENSE" and ref.name == "llama3"


def test_spoofing_in_the_body(policy) -> None:
    readme = "---\nlicense: cc-by-nc-4.0\n---\n# Model\n\nlicense: mit\n\nFree for everything!"
    found, _ = _codes({"license": "cc-by-nc-4.0"}, readme, None, policy)
    assert codes.LICENSE_SPOOFING in found and codes.LICENSE_DENIED in found
    sentence = "---\nlicense: other\n---\nThis model is released under the MIT License."
    found, _ = _codes({"license": "other"}, sentence, None, policy)
    assert codes.LICENSE_SPOOFING in found


def test_consistent_body_is_not_spoofing(policy) -> None:
    readme = "---\nlicense: apache-2.0\n---\nThis model is licensed under the Apache License, Version 2.0."
    found, _ = _codes({"license": "apache-2.0"}, readme, None, policy)
    assert found == [codes.LICENSE_ALLOWED]


def test_missing_unknown_and_garbage(policy) -> None:
    assert _codes({}, None, None, policy)[0] == [codes.LICENSE_MISSING]
    assert _codes({"license": "unknown"}, None, None, policy)[0] == [codes.LICENSE_DENIED]
    assert _codes({"license": "(((mit"}, None, None, policy)[0] == [codes.LICENSE_UNKNOWN]
    found, ref = _codes({}, None, {"LICENSE": texts.MIT.encode()}, policy)
    assert codes.LICENSE_ALLOWED in found and ref.spdx == "MIT"
    found, _ = _codes({"license": "mit"}, None, {"LICENSE": b"Do what the moon allows."}, policy)
    assert codes.LICENSE_FILE_UNIDENTIFIED in found
