"""Registry credentials: settings first (for `images.registry` only), then the Docker config; secrets never shown."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from registry.credentials import RegistryAuthError, registry_credentials, registry_host
from registry.registry_auth import Challenge, request_scope
from registry.settings import ImageSettings, load_settings

SECRET = "s3cr3t-Pa55word"


def _docker_config(tmp_path: Path, config: dict[str, object]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_settings_credentials_apply_to_the_configured_registry_only(tmp_path: Path) -> None:
    images = ImageSettings(registry="acr.example.io", registry_username="bot", registry_password=SECRET)
    nowhere = tmp_path / "none.json"
    found = registry_credentials("acr.example.io", images, docker_config=nowhere)
    assert found is not None and found.basic_pair() == ("bot", SECRET)
    assert found.trivy_environment() == {"TRIVY_USERNAME": "bot", "TRIVY_PASSWORD": SECRET}
    assert found.docker_auth_config() == {"username": "bot", "password": SECRET, "serveraddress": "acr.example.io"}
    assert found.basic_header() == "Basic " + _auth("bot", SECRET)
    # Never sent to another registry.
    assert registry_credentials("ghcr.io", images, docker_config=nowhere) is None
    # Never shown.
    assert SECRET not in repr(found) and SECRET not in str(found) and SECRET not in found.describe()
    assert SECRET not in repr(images)


def test_a_username_without_a_password_is_one_clear_error(tmp_path: Path) -> None:
    images = ImageSettings(registry="acr.example.io", registry_username="bot")
    with pytest.raises(RegistryAuthError, match="CURATE_IMAGES__REGISTRY_PASSWORD go together"):
        registry_credentials("acr.example.io", images, docker_config=tmp_path / "none.json")


def test_environment_variables_reach_the_settings_but_not_the_policy_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    before = load_settings().policy_digest("images")
    monkeypatch.setenv("CURATE_IMAGES__REGISTRY", "acr.example.io")
    registry_digest = load_settings().policy_digest("images")
    monkeypatch.setenv("CURATE_IMAGES__REGISTRY_USERNAME", "bot")
    monkeypatch.setenv("CURATE_IMAGES__REGISTRY_PASSWORD", SECRET)
    settings = load_settings()
    assert settings.policy_digest("images") == registry_digest != before
    flagged = load_settings(discovery={"limit": 3})  # flags merged over the environment keep the secret
    assert flagged.images.registry_password is not None
    assert flagged.images.registry_password.get_secret_value() == SECRET
    assert SECRET not in json.dumps(settings.policy())
    found = registry_credentials("acr.example.io")
    assert found is not None and found.basic_pair() == ("bot", SECRET)


def test_docker_config_auth_username_password_and_identity_token(tmp_path: Path) -> None:
    path = _docker_config(
        tmp_path,
        {
            "auths": {
                "https://a.example.io/v1/": {"auth": _auth("alice", SECRET)},
                "b.example.io:5000": {"username": "bob", "password": SECRET},
                "c.azurecr.io": {"auth": _auth("00000000-0000-0000-0000-000000000000", ""), "identitytoken": SECRET},
            }
        },
    )
    images = ImageSettings()
    a = registry_credentials("a.example.io", images, docker_config=path)
    assert a is not None and a.basic_pair() == ("alice", SECRET) and a.source == str(path)
    b = registry_credentials("b.example.io:5000", images, docker_config=path)
    assert b is not None and b.basic_pair() == ("bob", SECRET)
    c = registry_credentials("c.azurecr.io", images, docker_config=path)
    assert c is not None and c.identity_token is not None and c.password is None
    assert c.docker_auth_config() == {"identitytoken": SECRET, "serveraddress": "c.azurecr.io"}
    assert c.basic_pair() == ("00000000-0000-0000-0000-000000000000", SECRET)  # ACR takes the token as password
    assert registry_credentials("d.example.io", images, docker_config=path) is None
    token_only = _docker_config(tmp_path, {"auths": {"e.azurecr.io": {"identitytoken": SECRET}}})
    e = registry_credentials("e.azurecr.io", images, docker_config=token_only)
    assert e is not None and e.trivy_environment() == {}  # Trivy reads that Docker config entry itself
    assert SECRET not in repr(a) + repr(b) + repr(c)


def test_docker_config_from_the_docker_config_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _docker_config(tmp_path, {"auths": {"reg.example.io": {"auth": _auth("carol", SECRET)}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    found = registry_credentials("reg.example.io", ImageSettings())
    assert found is not None and found.username == "carol"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"credHelpers": {"acr.example.io": "acr-env"}}, "credential helper"),
        ({"credsStore": "desktop", "auths": {"acr.example.io": {}}}, "credential store 'desktop'"),
        ({"auths": {"acr.example.io": {"auth": "not base64!"}}}, "not base64"),
    ],
)
def test_unusable_docker_config_entries_say_what_to_set(
    tmp_path: Path, config: dict[str, object], message: str
) -> None:
    path = _docker_config(tmp_path, config)
    with pytest.raises(RegistryAuthError, match=message) as caught:
        registry_credentials("acr.example.io", ImageSettings(), docker_config=path)
    assert "CURATE_IMAGES__REGISTRY_USERNAME" in str(caught.value) or "docker login" in str(caught.value)


def test_a_credential_store_for_other_registries_leaves_this_one_anonymous(tmp_path: Path) -> None:
    path = _docker_config(tmp_path, {"credsStore": "desktop", "auths": {"other.example.io": {}}})
    assert registry_credentials("acr.example.io", ImageSettings(), docker_config=path) is None


def test_registry_hosts_are_normalised() -> None:
    assert registry_host("https://Index.Docker.io/v1/") == "index.docker.io"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_host("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"


def test_challenges_and_scopes_follow_the_distribution_spec() -> None:
    challenge = Challenge.parse(
        'Bearer realm="https://auth.example.io/token",service="registry.example.io",'
        'scope="repository:team/app:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.io/token",
        "service": "registry.example.io",
        "scope": "repository:team/app:pull,push",
    }
    basic = Challenge.parse('Basic realm="local"')
    assert basic is not None and basic.scheme == "basic" and basic.params == {"realm": "local"}
    assert Challenge.parse("") is None

    def scope(method: str, path: str) -> str:
        return request_scope(httpx.Request(method, f"http://r.example.io{path}"))

    assert scope("HEAD", "/v2/team/app/manifests/v1") == "repository:team/app:pull"
    assert scope("GET", "/v2/team/app/blobs/sha256:ab") == "repository:team/app:pull"
    assert scope("POST", "/v2/team/app/blobs/uploads/") == "repository:team/app:pull,push"
    assert scope("PUT", "/v2/a/blobs/uploads/123") == "repository:a:pull,push"
    assert scope("GET", "/v2/_catalog") == "registry:catalog:*"
    assert scope("GET", "/v2/") == ""
