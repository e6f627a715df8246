"""Settings precedence: flags > CURATE_* env > HF_* env > TOML file > defaults; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import RegistryError
from registry.settings import SettingsError, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_packaged_policy_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no curation.toml here: the packaged default is used
    settings = load_settings()
    assert "Apache-2.0" in settings.licenses.allow
    assert {"A100_80GB", "H100_80GB", "cpu"} <= set(settings.accelerators)
    assert settings.storage.primary_region in settings.storage.regions


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[discovery]\nlimit = 7\n[hub]\nendpoint = "http://file"\n')
    monkeypatch.setenv("CURATE_CONFIG", str(config))
    assert load_settings().discovery.limit == 7
    assert load_settings().hub.endpoint == "http://file"
    monkeypatch.setenv("HF_ENDPOINT", "http://hf-env/")
    assert load_settings().hub.endpoint == "http://hf-env"
    monkeypatch.setenv("CURATE_HUB__ENDPOINT", "http://curate-env")
    monkeypatch.setenv("CURATE_DISCOVERY__LIMIT", "9")
    assert load_settings().hub.endpoint == "http://curate-env"
    assert load_settings().discovery.limit == 9
    flagged = load_settings(discovery={"limit": 3}, hub={"endpoint": "http://flag"})
    assert (flagged.discovery.limit, flagged.hub.endpoint) == (3, "http://flag")
    assert flagged.discovery.pipeline_tags == load_settings().discovery.pipeline_tags  # merged, not replaced


def test_token_is_secret_and_not_in_the_policy_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    settings = load_settings()
    assert settings.hub_token() == "hf_secret_value"
    assert "hf_secret_value" not in repr(settings)
    assert "hf_secret_value" not in str(settings.policy())
    monkeypatch.delenv("HF_TOKEN")
    assert load_settings().policy_digest() == settings.policy_digest()


def test_policy_digest_changes_with_policy_only() -> None:
    base = load_settings()
    assert load_settings(hub={"endpoint": "http://elsewhere"}).policy_digest() == base.policy_digest()
    assert load_settings(licenses={"allow": ["MIT"]}).policy_digest() != base.policy_digest()


def test_errors_name_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CURATE_CONFIG", str(write(tmp_path / "bad.toml", "[discovery]\nlimit = 0\n")))
    with pytest.raises(SettingsError, match=r"discovery\.limit"):
        load_settings()
    monkeypatch.setenv("CURATE_CONFIG", str(write(tmp_path / "typo.toml", "[discovery]\nlimt = 3\n")))
    with pytest.raises(SettingsError, match="limt"):
        load_settings()
    monkeypatch.setenv("CURATE_CONFIG", str(write(tmp_path / "broken.toml", "[discovery\n")))
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings()
    monkeypatch.setenv("CURATE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="not a file"):
        load_settings()
    # One hierarchy per package: a caller catching RegistryError catches a settings problem too.
    with pytest.raises(RegistryError):
        load_settings()
