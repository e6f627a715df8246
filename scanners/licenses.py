"""Licences: normalise the card's licence to an SPDX expression, identify LICENSE files, judge against the
policy.

Sources: the card's `license` (a Hub id, a list, or an SPDX expression), `license_name` / `license_link` (for
`other`), LICENSE* / COPYING* files and the README body. Normalisation uses `license-expression` with the SPDX
licence list (`get_spdx_licensing()`): Hub ids that are SPDX ids (`apache-2.0`, `cc-by-nc-4.0`, `gpl-3.0`)
become their SPDX ids, the Hub's own ids (`llama3`, `gemma`, `openrail`) become `LicenseRef-<id>`, and `other`
becomes `LicenseRef-<license_name>` when the policy knows that name (else `LicenseRef-other`). Expressions are
judged by their structure: AND needs every part allowed, OR takes the best branch, WITH needs a known SPDX
exception.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from license_expression import (
    AND,
    OR,
    ExpressionError,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)

from registry import finding_codes as codes
from registry.schema import Finding, LicenseReference, Severity, Verdict
from registry.settings import LicensePolicy
from scanners.paths import display_path

SCANNER = "licenses"
LICENSE_FILE = re.compile(r"^(?:.*/)?(?:LICEN[CS]E|COPYING|LICENSE_AGREEMENT|USE_POLICY)[^/]*$", re.IGNORECASE)
_REF_CHARS = re.compile(r"[^A-Za-z0-9.\-]+")
_RANK = {Verdict.ACCEPTED: 0, Verdict.NEEDS_REVIEW: 1, Verdict.REJECTED: 2}
_MAX_DECLARED = 300

# Key phrases of licence texts (lower-case, whitespace collapsed) -> SPDX id or LicenseRef id. These are the
# titles or grant sentences each licence text carries; the ids are checked against the SPDX list at import.
# Order matters: more specific phrases first (BY-NC-SA before BY-NC before BY).
_TEXT_PHRASES: tuple[tuple[str, str], ...] = (
    (r"spdx-license-identifier:", ""),  # handled separately (the identifier line wins)
    (r"attribution-noncommercial-sharealike 4\.0|cc by-nc-sa 4\.0", "CC-BY-NC-SA-4.0"),
    (r"attribution-noncommercial-noderivatives 4\.0|cc by-nc-nd 4\.0", "CC-BY-NC-ND-4.0"),
    (
        r"attribution-noncommercial 4\.0|cc by-nc 4\.0|creativecommons\.org/licenses/by-nc/4\.0",
        "CC-BY-NC-4.0",
    ),
    (r"attribution-noncommercial-sharealike 3\.0", "CC-BY-NC-SA-3.0"),
    (r"attribution-noncommercial 3\.0", "CC-BY-NC-3.0"),
    (r"attribution-noderivatives 4\.0", "CC-BY-ND-4.0"),
    (r"attribution-sharealike 4\.0|cc by-sa 4\.0", "CC-BY-SA-4.0"),
    (r"attribution 4\.0 international|cc by 4\.0|creativecommons\.org/licenses/by/4\.0", "CC-BY-4.0"),
    (r"cc0 1\.0 universal", "CC0-1.0"),
    (r"gnu affero general public license\s+version 3", "AGPL-3.0-only"),
    (r"gnu lesser general public license\s+version 3", "LGPL-3.0-only"),
    (r"gnu lesser general public license\s+version 2\.1", "LGPL-2.1-only"),
    (r"gnu general public license\s+version 3", "GPL-3.0-only"),
    (r"gnu general public license\s+version 2", "GPL-2.0-only"),
    (r"mozilla public license,? version 2\.0", "MPL-2.0"),
    (
        r"apache license,?\s+version 2\.0|apache license 2\.0|apache 2\.0 license|\bapache-2\.0\b"
        r"|\bapache 2\.0\b",
        "Apache-2.0",
    ),
    (r"boost software license", "BSL-1.0"),
    (r"this is free and unencumbered software released into the public domain", "Unlicense"),
    (r"permission to use, copy, modify, and/or distribute this software for any purpose", "ISC"),
    (r"permission is hereby granted, free of charge, to any person obtaining a copy|\bmit license\b", "MIT"),
    (r"llama 4 community license", "LicenseRef-llama4"),
    (r"llama 3\.3 community license", "LicenseRef-llama3.3"),
    (r"llama 3\.2 community license", "LicenseRef-llama3.2"),
    (r"llama 3\.1 community license", "LicenseRef-llama3.1"),
    (r"llama 3 community license", "LicenseRef-llama3"),
    (r"llama 2 community license", "LicenseRef-llama2"),
    (r"gemma terms of use", "LicenseRef-gemma"),
    (r"tongyi qianwen license agreement|qwen license agreement", "LicenseRef-qwen"),
    (r"deepseek license agreement", "LicenseRef-deepseek"),
    (r"creativeml open rail-m", "LicenseRef-creativeml-openrail-m"),
    (r"bigscience open rail-m|bigscience rail license", "LicenseRef-bigscience-openrail-m"),
)
_BSD_GRANT = "redistribution and use in source and binary forms, with or without modification, are permitted"
_BSD_NEITHER = "neither the name of"
_COMPILED = tuple((re.compile(p), spdx) for p, spdx in _TEXT_PHRASES if spdx)
_SPDX_LINE = re.compile(r"spdx-license-identifier:\s*([^\n\r*#/]+)", re.IGNORECASE)

# README body claims: a YAML-looking `license: X` line, a `## License` heading followed by a name, or a
# "licensed under (the) X" sentence.
_BODY_YAML = re.compile(r"^\s*license\s*:\s*[\"']?([A-Za-z0-9.+\-]+)", re.IGNORECASE | re.MULTILINE)
_BODY_SENTENCE = re.compile(
    r"(?:released|licensed|distributed|available)\s+under\s+(?:the\s+)?(?:terms\s+of\s+the\s+)?"
    r"([A-Za-z0-9 .+\-]{2,60}?)(?:\s+licen[cs]e\b|[,;:)\n]|\.(?:\s|$))",
    re.IGNORECASE,
)


@lru_cache(maxsize=1)
def licensing() -> Licensing:
    """The SPDX licensing (SPDX licence list + exceptions) shipped with `license-expression`."""
    return get_spdx_licensing()


@dataclass(frozen=True)
class Normalized:
    """A declared licence as an SPDX expression (None when it cannot be parsed)."""

    expression: str | None
    declared: str | None
    problem: str = ""


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    denied: tuple[str, ...] = ()
    review: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class LicenseScan:
    findings: tuple[Finding, ...]
    reference: LicenseReference


def _ref_id(key: str) -> str:
    if key.lower().startswith("licenseref-"):
        key = key[len("licenseref-") :]
    slug = _REF_CHARS.sub("-", key.strip()).strip("-") or "unknown"
    return f"LicenseRef-{slug}"


def _policy_ids(policy: LicensePolicy) -> dict[str, str]:
    """lower-cased id -> the policy's spelling, over all three lists."""
    return {i.lower(): i for i in (*policy.allow, *policy.review, *policy.deny)}


def _render(node: Any, rename: Mapping[str, str]) -> str:
    if isinstance(node, LicenseWithExceptionSymbol):
        return f"{_render(node.license_symbol, rename)} WITH {_render(node.exception_symbol, rename)}"
    if isinstance(node, LicenseSymbol):
        return rename.get(node.key, node.key)
    if isinstance(node, AND | OR):
        joiner = " AND " if isinstance(node, AND) else " OR "
        parts = []
        for arg in node.args:
            text = _render(arg, rename)
            parts.append(f"({text})" if isinstance(arg, AND | OR) else text)
        return joiner.join(parts)
    raise ExpressionError(f"unexpected licence expression node {type(node).__name__}")


def normalize(declared: object, license_name: object = None, policy: LicensePolicy | None = None) -> Normalized:
    """The card's `license` (+ `license_name` for `other`) as an SPDX expression with LicenseRef- ids."""
    if declared is None or declared in ("", []):
        return Normalized(None, None, "no licence declared")
    if isinstance(declared, list | tuple):
        items = [str(d) for d in declared if str(d).strip()]
        text = " AND ".join(f"({d})" if " " in d.strip() else d for d in items)
        verbatim = ", ".join(items)
    else:
        text = verbatim = str(declared)
    verbatim = verbatim[:_MAX_DECLARED]
    if len(text) > _MAX_DECLARED:
        return Normalized(None, verbatim, "the declared licence is implausibly long")
    lic = licensing()
    try:
        parsed = lic.parse(text, validate=False, simple=False)
    except ExpressionError as exc:
        return Normalized(None, verbatim, f"not a licence expression ({exc})")
    if parsed is None:
        return Normalized(None, verbatim, "no licence declared")
    known_in_policy = _policy_ids(policy) if policy else {}
    rename: dict[str, str] = {}
    for key in lic.unknown_license_keys(parsed):
        if key.lower() == "other":
            name = str(license_name).strip() if license_name else ""
            candidate = _ref_id(name) if name else "LicenseRef-other"
            rename[key] = known_in_policy.get(candidate.lower(), "LicenseRef-other")
        else:
            # A free-text name ("Apache 2.0") that the key phrases recognise, else LicenseRef-<id>.
            recognised = identify_text(key) if " " in key.strip() else None
            candidate = recognised or _ref_id(key)
            rename[key] = known_in_policy.get(candidate.lower(), candidate)
    return Normalized(_render(parsed, rename), verbatim)


def _judge_node(node: Any, allow: set[str], review: set[str], deny: set[str]) -> Judgement:
    lic = licensing()
    if isinstance(node, LicenseWithExceptionSymbol):
        base = _judge_node(node.license_symbol, allow, review, deny)
        exception = node.exception_symbol.key
        known = lic.known_symbols.get(exception)
        if known is None or not known.is_exception:
            return Judgement(Verdict.REJECTED, base.denied, base.review, (*base.unknown, f"WITH {exception}"))
        return base
    if isinstance(node, LicenseSymbol):
        key = node.key.lower()
        if key in deny:
            return Judgement(Verdict.REJECTED, denied=(node.key,))
        if key in allow:
            return Judgement(Verdict.ACCEPTED)
        if key in review:
            return Judgement(Verdict.NEEDS_REVIEW, review=(node.key,))
        return Judgement(Verdict.REJECTED, unknown=(node.key,))
    if isinstance(node, AND | OR):
        parts = [_judge_node(a, allow, review, deny) for a in node.args]
        pick = max if isinstance(node, AND) else min
        verdict = pick((p.verdict for p in parts), key=_RANK.__getitem__)
        chosen = parts if isinstance(node, AND) else [p for p in parts if p.verdict is verdict]
        return Judgement(
            verdict,
            tuple(d for p in chosen for d in p.denied),
            tuple(r for p in chosen for r in p.review),
            tuple(u for p in chosen for u in p.unknown),
        )
    raise ExpressionError(f"unexpected licence expression node {type(node).__name__}")


def judge(expression: str, policy: LicensePolicy) -> Judgement:
    """Judge a normalised expression against the allow / review / deny lists (unknown ids are denied)."""
    lic = licensing()
    parsed = lic.parse(expression, validate=False, simple=False)

    def ids(values: Iterable[str]) -> set[str]:
        return {v.lower() for v in values}

    return _judge_node(parsed, ids(policy.allow), ids(policy.review), ids(policy.deny))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())


def identify_text(text: str) -> str | None:
    """The licence of a LICENSE file's text as an SPDX expression, from its identifier line or key phrases."""
    head = text[:200_000]
    spdx = _SPDX_LINE.search(head)
    if spdx:
        normal = normalize(spdx.group(1).strip())
        if normal.expression:
            return normal.expression
    squashed = _squash(head[:20_000])
    for pattern, spdx_id in _COMPILED:
        if pattern.search(squashed):
            return spdx_id
    if _BSD_GRANT in squashed:
        return "BSD-3-Clause" if _BSD_NEITHER in squashed else "BSD-2-Clause"
    return None


def _equivalent(a: str, b: str) -> bool:
    lic = licensing()
    try:
        return bool(lic.is_equivalent(lic.parse(a, validate=False), lic.parse(b, validate=False)))
    except ExpressionError:
        return a.lower() == b.lower()


def _strip_front_matter(readme: str) -> tuple[str, str]:
    """(front matter, body) of a model card."""
    if readme.startswith("---"):
        end = readme.find("\n---", 3)
        if end != -1:
            return readme[3:end], readme[end + 4 :]
    return "", readme


def body_claims(readme: str) -> list[tuple[str, str]]:
    """(quoted text, normalised expression) for every licence the README body claims."""
    _, body = _strip_front_matter(readme[:1_000_000])
    claims: list[tuple[str, str]] = []
    for match in _BODY_YAML.finditer(body):
        normal = normalize(match.group(1))
        if normal.expression and not normal.expression.startswith("LicenseRef-"):
            claims.append((match.group(0).strip(), normal.expression))
    for match in _BODY_SENTENCE.finditer(body):
        phrase = match.group(0)
        spdx = identify_text(phrase) or identify_text(match.group(1) + " license")
        if spdx:
            claims.append((phrase.strip(), spdx))
    return claims


def _finding(code: str, severity: Severity, message: str, path: str | None = None) -> Finding:
    return Finding(scanner=SCANNER, code=code, severity=severity, message=message, path=path)


def _judgement_findings(expression: str, source: str, policy: LicensePolicy, path: str | None) -> list[Finding]:
    try:
        result = judge(expression, policy)
    except ExpressionError as exc:
        return [
            _finding(codes.LICENSE_UNKNOWN, Severity.HIGH, f"{source} {expression!r} cannot be judged: {exc}", path)
        ]
    if result.verdict is Verdict.ACCEPTED:
        return [_finding(codes.LICENSE_ALLOWED, Severity.INFO, f"{source} {expression} is allowed by policy", path)]
    found: list[Finding] = []
    if result.denied:
        found.append(
            _finding(
                codes.LICENSE_DENIED,
                Severity.HIGH,
                f"{source} {expression} is denied by policy ({', '.join(result.denied)}: licenses.deny)",
                path,
            )
        )
    if result.unknown:
        found.append(
            _finding(
                codes.LICENSE_DENIED,
                Severity.HIGH,
                f"{source} {expression} contains licences in no policy list ({', '.join(result.unknown)}); "
                "unknown "
                "licences are denied: add them to licenses.allow/review in curation.toml if acceptable",
                path,
            )
        )
    if result.review and not found:
        found.append(
            _finding(
                codes.LICENSE_REVIEW,
                Severity.MEDIUM,
                f"{source} {expression} needs a maintainer's review of its terms "
                f"({', '.join(result.review)}: "
                "licenses.review)",
                path,
            )
        )
    return found


def _card_findings(normal: Normalized, declared: object, policy: LicensePolicy) -> list[Finding]:
    """The card's licence: unknown when it is no SPDX expression or Hub id, else judged by policy."""
    if normal.expression is None and declared not in (None, "", []):
        return [
            _finding(
                codes.LICENSE_UNKNOWN,
                Severity.HIGH,
                f"the card's licence {normal.declared!r} is not an SPDX expression or Hub licence id "
                f"({normal.problem}); fix the card's `license` field",
            )
        ]
    if normal.expression is not None:
        return _judgement_findings(normal.expression, "the card's licence", policy, "README.md")
    return []


def _file_findings(
    card_expr: str | None, license_files: Mapping[str, bytes], policy: LicensePolicy
) -> tuple[list[Finding], str | None, str | None]:
    """LICENSE files: identify each, judge it, compare with the card. (findings, file path, file expression)."""
    findings: list[Finding] = []
    file_path: str | None = None
    file_expr: str | None = None
    for path in sorted(license_files, key=lambda p: (p.count("/"), len(p))):
        shown = display_path(path)
        identified = identify_text(license_files[path].decode("utf-8", "replace"))
        if identified is None:
            if card_expr is None or not _is_other(card_expr):
                findings.append(
                    _finding(
                        codes.LICENSE_FILE_UNIDENTIFIED,
                        Severity.MEDIUM,
                        f"{shown} is not a licence text this scanner recognises; a maintainer must read it and "
                        "confirm it matches the card",
                        shown,
                    )
                )
            file_path = file_path or path
            continue
        if file_expr is None:
            file_path, file_expr = path, identified
        if card_expr is not None and not _is_other(card_expr) and not _equivalent(card_expr, identified):
            findings.append(
                _finding(
                    codes.LICENSE_MISMATCH,
                    Severity.HIGH,
                    f"the card says {card_expr} but {shown} is {identified}; a maintainer must decide which "
                    "applies (the stricter is used meanwhile)",
                    shown,
                )
            )
        if card_expr is None or not _equivalent(card_expr, identified):
            judged = _judgement_findings(identified, f"{shown} licence", policy, shown)
            findings.extend(f for f in judged if f.code != codes.LICENSE_ALLOWED or card_expr is None)
    return findings, file_path, file_expr


def _presence_findings(normal: Normalized, file_path: str | None, file_expr: str | None) -> list[Finding]:
    """No licence anywhere, or only in a LICENSE file the card does not declare."""
    if normal.expression is not None or normal.declared:
        return []
    if file_expr is None:
        return [
            _finding(
                codes.LICENSE_MISSING,
                Severity.HIGH,
                "no licence: the card declares none and no LICENSE file was found; unknown licences are denied",
            )
        ]
    return [
        _finding(
            codes.LICENSE_MISMATCH,
            Severity.MEDIUM,
            f"the card declares no licence; the LICENSE file says {file_expr}: add `license:` to the card",
            display_path(file_path or ""),
        )
    ]


def _spoofing_findings(readme: str | None, reference_expr: str | None) -> list[Finding]:
    """README body claims that disagree with the metadata (licence spoofing)."""
    findings: list[Finding] = []
    seen: set[str] = set()
    for quoted, claimed in body_claims(readme or ""):
        if claimed in seen or (reference_expr and _is_other(reference_expr) and claimed.startswith("LicenseRef-")):
            continue
        if reference_expr is None or not _equivalent(reference_expr, claimed):
            seen.add(claimed)
            snippet = quoted[:80].replace("\n", " ")
            findings.append(
                _finding(
                    codes.LICENSE_SPOOFING,
                    Severity.HIGH,
                    f"the README body claims {claimed} ({snippet!r}) but the card metadata says "
                    f"{reference_expr or 'nothing'}; the metadata is what counts: review the card",
                    "README.md",
                )
            )
    return findings


def scan_licenses(
    card: Mapping[str, Any],
    readme: str | None,
    license_files: Mapping[str, bytes],
    policy: LicensePolicy,
    *,
    file_hashes: Mapping[str, str] | None = None,
) -> LicenseScan:
    """Findings about the repository's licence and the reference to its upstream text."""
    license_name, license_link = card.get("license_name"), card.get("license_link")
    normal = normalize(card.get("license"), license_name, policy)
    findings = _card_findings(normal, card.get("license"), policy)
    file_findings, file_path, file_expr = _file_findings(normal.expression, license_files, policy)
    findings += file_findings
    findings += _presence_findings(normal, file_path, file_expr)
    effective = normal.expression if normal.expression is not None else file_expr
    if readme:
        findings += _spoofing_findings(readme, effective)
    file_sha = None
    if file_path is not None:
        file_sha = (file_hashes or {}).get(file_path) or hashlib.sha256(license_files[file_path]).hexdigest()
    reference = LicenseReference(
        spdx=effective,
        declared=normal.declared,
        name=str(license_name)[:200] if license_name else None,
        url=str(license_link)[:500] if license_link else None,
        file=display_path(file_path) if file_path else None,
        file_sha256=file_sha,
    )
    return LicenseScan(tuple(findings), reference)


def _is_other(expression: str) -> bool:
    return expression.lower() == "licenseref-other"
