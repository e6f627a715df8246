"""The image gate accepts a secret finding only where the policy names its rule and file, with a reason, until
its expiry (the vLLM image's anthropic SDK documents {"type": "service_account"}, which Trivy flags)."""

from __future__ import annotations

from datetime import date

from registry.settings import AllowedSecret, ImageSettings, load_settings
from scanners.image_gate import gate

SDK = "/opt/venv/lib/python3.11/site-packages/anthropic/types/beta/agent_create_params.py"


def _report(*targets: str, rule: str = "gcp-service-account") -> dict[str, object]:
    return {"Results": [{"Target": t, "Secrets": [{"RuleID": rule, "Severity": "CRITICAL"}]} for t in targets]}


def test_an_allowed_secret_is_recorded_not_blocking_and_only_where_named() -> None:
    policy = ImageSettings(
        allowed_secrets=(
            AllowedSecret(
                rule="gcp-service-account",
                path="/opt/venv/lib/python3.11/site-packages/anthropic/*",
                reason="docstrings",
                expires="2027-06-01",
            ),
        )
    )
    summary = gate(_report(SDK), policy, today=date(2027, 6, 1))
    assert summary.passed and summary.allowed == ("secret:gcp-service-account",) and summary.secrets == 1
    # Another file, another rule, or after the expiry: blocking as before.
    assert not gate(_report(SDK, "/opt/venv/lib/python3.11/site-packages/other/x.py"), policy).passed
    assert not gate(_report(SDK, rule="aws-access-key-id"), policy).passed
    assert not gate(_report(SDK), policy, today=date(2027, 6, 2)).passed
    assert not gate(_report(SDK), ImageSettings()).passed


def test_the_shipped_policy_accepts_only_the_reviewed_finding() -> None:
    policy = load_settings().images
    assert [(a.rule, a.expires is not None) for a in policy.allowed_secrets] == [("gcp-service-account", True)]
    assert gate(_report(SDK), policy, today=date(2027, 1, 1)).passed
