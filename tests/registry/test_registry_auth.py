"""The OCI client against a real CNCF registry that enforces token auth (distribution's `auth: token`), with the
token server of tests/fixtures/token_server.py as its realm: Bearer challenges, basic credentials, anonymous
tokens, the OAuth2 refresh-token flow, per-scope token caching, and the re-challenge of a refused cached token."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from devstack.docker_engine import (
    DockerStackError,
    htpasswd_auth,
    registry_login,
    start_registry,
    stop_registry,
)
from registry.credentials import RegistryAuthError, RegistryCredentials
from registry.oci import OCI_MANIFEST, OciAuthError, OciClient
from registry.registry_auth import RegistryAuth
from tests.fixtures.registry_auth import TokenRegistry

pytestmark = [pytest.mark.integration]


def _alice(registry: TokenRegistry, password: str | None = None) -> RegistryCredentials:
    secret = registry.password if password is None else password
    return RegistryCredentials(registry=registry.address, username=registry.user, password=SecretStr(secret))


def _push_image(oci: OciClient, repository: str) -> str:
    """A tiny image (config + one layer) under tag `v1`; returns its manifest digest."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = uuid.uuid4().bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": oci.push_blob(repository, config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": oci.push_blob(repository, layer),
                    "size": len(layer)}],
    }  # fmt: skip
    return oci.put_manifest(repository, "v1", json.dumps(manifest).encode())


def _sorted_actions(scope: str) -> str:
    """The registry names a scope's actions in no fixed order (`push,pull` or `pull,push`)."""
    resource, _, actions = scope.rpartition(":")
    return f"{resource}:{','.join(sorted(actions.split(',')))}"


def test_bearer_tokens_from_basic_credentials_are_cached_per_scope(token_registry: TokenRegistry) -> None:
    repository = f"team/app-{uuid.uuid4().hex[:8]}"
    before = len(token_registry.server.issued)
    with OciClient(token_registry.address, credentials=_alice(token_registry)) as oci:
        digest = _push_image(oci, repository)
        assert oci.get_manifest(repository, "v1").digest == digest
        assert oci.tags(repository) == ["v1"]
        assert oci.manifest_digest(repository, "v1") == digest
        # One token to read (the first HEAD) and one to write (the first upload), then only cached ones.
        assert oci.auth.token_requests == 2
        assert oci.manifest_digest(f"{repository}-other", "v1") is None
        assert oci.auth.token_requests == 3  # another repository is another scope
        assert repository in oci.repositories()
    issued = token_registry.server.issued[before:]
    assert [tuple(_sorted_actions(s) for s in scopes) for _, scopes in issued] == [
        (f"repository:{repository}:pull",),
        (f"repository:{repository}:pull,push",),
        (f"repository:{repository}-other:pull",),
        ("registry:catalog:*",),
    ]
    assert {user for user, _ in issued} == {"alice"}


def test_anonymous_tokens_read_public_repositories_and_nothing_more(token_registry: TokenRegistry) -> None:
    public, private = f"public/base-{uuid.uuid4().hex[:8]}", f"team/secret-{uuid.uuid4().hex[:8]}"
    with OciClient(token_registry.address, credentials=_alice(token_registry)) as oci:
        digest = _push_image(oci, public)
        _push_image(oci, private)
    with OciClient(token_registry.address) as anonymous:
        assert anonymous.manifest_digest(public, "v1") == digest  # an anonymous token is enough to read it
        with pytest.raises(OciAuthError, match=r"needs credentials.*CURATE_IMAGES__REGISTRY_USERNAME"):
            anonymous.get_manifest(private, "v1")
        with pytest.raises(OciAuthError, match="needs credentials"):
            anonymous.push_blob(public, b"not allowed")
    assert token_registry.server.issued[-1][0] == ""


def test_an_identity_token_uses_the_oauth2_refresh_token_flow(token_registry: TokenRegistry) -> None:
    repository = f"team/acr-{uuid.uuid4().hex[:8]}"
    credentials = RegistryCredentials(
        registry=token_registry.address, identity_token=SecretStr(token_registry.refresh_token), source="config.json"
    )
    with OciClient(token_registry.address, credentials=credentials) as oci:
        digest = _push_image(oci, repository)  # no password at all: only the POSTed refresh token authenticates
        assert oci.get_manifest(repository, digest).digest == digest
    assert token_registry.server.issued[-1][0] == "alice"


def test_a_wrong_password_is_one_clear_error_without_the_secret(token_registry: TokenRegistry) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    with (
        OciClient(token_registry.address, credentials=_alice(token_registry, wrong)) as oci,
        pytest.raises(OciAuthError) as caught,
    ):
        oci.manifest_digest("team/app", "v1")
    message = str(caught.value)
    assert "refused the credentials of user 'alice'" in message
    assert "CURATE_IMAGES__REGISTRY_PASSWORD" in message
    assert wrong not in message and token_registry.password not in message


def test_a_refused_cached_token_is_re_challenged(token_registry: TokenRegistry) -> None:
    repository = f"team/rotate-{uuid.uuid4().hex[:8]}"
    with OciClient(token_registry.address, credentials=_alice(token_registry)) as oci:
        digest = _push_image(oci, repository)
        assert oci.manifest_digest(repository, "v1") == digest
        requests = oci.auth.token_requests
        old_token = token_registry.server.issue("alice", [f"repository:{repository}:pull"])["token"]
        # The token service rotates its signing key; the registry trusts only the new one from now on.
        token_registry.server.rotate_key()
        token_registry.restart()
        refused = httpx.head(
            f"http://{token_registry.address}/v2/{repository}/manifests/v1",
            headers={"Authorization": f"Bearer {old_token}"},
        )
        assert refused.status_code == 401
        # The client's cached token is refused too: it is dropped, the challenge answered anew, the read works.
        assert oci.get_manifest(repository, "v1").digest == digest
        assert oci.auth.token_requests == requests + 1


def test_credentials_never_go_to_a_plain_http_realm_elsewhere() -> None:
    seen: list[str] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        challenge = 'Bearer realm="http://auth.example.io/token",service="r",scope="repository:a:pull"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    credentials = RegistryCredentials(registry="r.example.io", username="u", password=SecretStr("p"))
    auth = RegistryAuth("r.example.io", credentials)
    with (
        httpx.Client(transport=httpx.MockTransport(registry), auth=auth) as client,
        pytest.raises(RegistryAuthError, match="over plain http; refused"),
    ):
        client.get("https://r.example.io/v2/a/manifests/v1")
    auth.close()
    assert seen == ["https://r.example.io/v2/a/manifests/v1"] and auth.token_requests == 0


def test_the_local_stack_login_is_made_once_and_reaches_every_client_through_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login, htpasswd = registry_login(tmp_path)
    assert registry_login(tmp_path)[0] == login  # kept: restarting the stack keeps the clients' variables valid
    assert (tmp_path / "registry-login.json").stat().st_mode & 0o777 == 0o600
    assert htpasswd.read_text().startswith(f"{login.username}:$2b$")  # bcrypt: what distribution accepts
    assert login.password not in repr(login)
    address, _ = start_registry(tmp_path, auth=htpasswd_auth(htpasswd))
    try:
        for key, value in {**login.client_env(), "CURATE_IMAGES__REGISTRY": address}.items():
            monkeypatch.setenv(key, value)  # what `curate dev env` exports
        with OciClient.for_registry(address) as oci:
            assert oci.repositories() == []
        with pytest.raises(DockerStackError, match="another authentication setting"):
            start_registry(tmp_path)  # the stack asked for an anonymous registry while this one runs
    finally:
        stop_registry(tmp_path)
