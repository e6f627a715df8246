"""The one rule for each identifier that arrives from outside: repo ids, revisions, file names in repositories,
template ids, entry ids, region names and service URLs.

Every value a user types, a policy file names or a Hub answers is checked here before it can become part of a
filesystem path, a blob name, an artifact key or a URL path. Each `check_*` returns the value unchanged or raises
`InvalidIdentifierError` (a `ValueError` too, so the records' pydantic validators reuse the same functions), whose
message shows the value escaped and bounded: a hostile id never spreads over several lines of a terminal.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from registry.errors import RegistryError

MAX_SHOWN = 80

# One part of a Hub id (org or name), as the Hub itself allows: letters, digits, '-', '_', '.'; starting with a
# letter or digit, not ending with '-' or '.', at most 96 characters; '--' and '..' are forbidden (the catalog
# joins org and name with '--', so a '--' inside a part would let two repositories share one entry id).
_ID_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_ID_PART}/{_ID_PART}")
_SHA = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A branch or tag name (git's check-ref-format, narrowed to what the Hub uses: "main", "v1.0", "refs/pr/3").
_REF_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._/-]{0,198}[A-Za-z0-9_])?")
# A file inside a repository that may become a local path or a blob name: plain ASCII parts, at most 4 levels.
_REPO_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}(?:/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}){0,3}")
# Catalog slugs: template ids ("qwen--qwen3-32b--128k-nvidia-2xh100") and entry ids ("qwen--qwen3-32b").
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,198}[a-z0-9_])?")
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class InvalidIdentifierError(RegistryError, ValueError):
    """An id, revision, file name or region name that breaks its rule; nothing was done with it."""


def shown(value: object) -> str:
    """A value for a one-line message: escaped (no newline or control character survives) and bounded."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    if len(text) <= MAX_SHOWN:
        return text
    suffix = f"...({len(str(value))} chars)"
    return text[: MAX_SHOWN - len(suffix)] + suffix


def _invalid(what: str, value: object, rule: str) -> InvalidIdentifierError:
    return InvalidIdentifierError(f"{shown(value)} is not {what}: {rule}")


def check_repo_id(value: str) -> str:
    """`org/name` as the Hub allows it."""
    if not isinstance(value, str) or not _REPO_ID.fullmatch(value) or ".." in value or "--" in value:
        raise _invalid(
            "a Hub model id",
            value,
            "expected org/name (letters, digits, '-', '_', '.'; no '..' or '--'; e.g. Qwen/Qwen3-0.6B)",
        )
    return value


def _matching(pattern: re.Pattern[str], value: str, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _invalid(what, value, rule)
    return value


def check_sha(value: str) -> str:
    """A full commit sha: 40 lowercase hex digits."""
    return _matching(_SHA, value, "a 40-hex commit sha", "expected 40 lowercase hex digits")


def check_sha256(value: str) -> str:
    """A sha256 in hex (64 lowercase digits): file hashes and key ids."""
    return _matching(_SHA256, value, "a sha256", "expected 64 lowercase hex digits")


def check_revision(value: str) -> str:
    """A commit sha, or a branch or tag name such as `main`, `v1.0` or `refs/pr/3`."""
    bad = (
        not isinstance(value, str)
        or not _REF_NAME.fullmatch(value)
        or ".." in value
        or "//" in value
        or "/." in value
        or value.endswith(".lock")
    )
    if bad:
        raise _invalid("a revision", value, "expected a commit sha or a branch/tag name (e.g. main, v1.0, refs/pr/3)")
    return value


def check_repo_file(value: str) -> str:
    """A file name inside a repository that is safe as a local relative path and as part of a blob name."""
    if not isinstance(value, str) or not _REPO_FILE.fullmatch(value) or ".." in value.split("/"):
        raise _invalid(
            "a safe file name",
            value,
            "expected a relative path of ASCII letters, digits, '.', '_', '-' (at most 4 levels, no '..')",
        )
    return value


def is_safe_repo_file(value: str) -> bool:
    try:
        check_repo_file(value)
    except InvalidIdentifierError:
        return False
    return True


def _check_slug(value: str, what: str, example: str) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value) or ".." in value:
        raise _invalid(what, value, f"expected lowercase letters, digits, '.', '_', '-' (e.g. {example})")
    return value


def check_template_id(value: str) -> str:
    """A deployment template id, as the planner makes them."""
    return _check_slug(value, "a template id", "qwen--qwen3-32b--128k-nvidia-2xh100")


def check_entry_id(value: str) -> str:
    """A catalog entry id: the repository as `org--name`, lowercase."""
    _check_slug(value, "a catalog entry id", "qwen--qwen3-32b")
    if "--" not in value:
        raise _invalid("a catalog entry id", value, "expected org--name, lowercase (e.g. qwen--qwen3-32b)")
    return value


def check_http_url(value: str) -> str:
    """An http(s) URL with a host and nothing unprintable: a Hub endpoint, an OpenAI-compatible base URL."""
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        parts = None
    printable = isinstance(value, str) and value.isascii() and value.isprintable() and " " not in value
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not printable:
        raise _invalid("an http(s) URL", value, "expected e.g. http://127.0.0.1:8000/v1 or https://huggingface.co")
    return value


def check_region(value: str) -> str:
    """A storage region name as the policy names them (`[storage.regions.<name>]`)."""
    return _matching(_REGION, value, "a region name", "expected lowercase letters, digits and '-' (e.g. eastus)")
