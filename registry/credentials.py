"""Registry credentials: from the settings (`images.registry_username` / `images.registry_password`), else from a
Docker config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), else none (anonymous).

Settings credentials apply only to the registry named by `images.registry`; a Docker config entry only to the
registry it is keyed by: credentials are never sent to a registry they were not given for. Docker config entries
may hold `auth` (base64 `user:password`), `username`/`password`, or an `identitytoken` (an OAuth2 refresh token,
what `az acr login` and `docker login` with a token store). Credential helpers (`credsStore`, `credHelpers`) are
not run: an entry that only a helper holds is reported with what to set instead.

Secrets stay in `SecretStr` and are revealed only where they are sent (an Authorization header, the Docker
Engine's auth config, Trivy's environment); `repr`, messages and logs never carry them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from registry.errors import RegistryError
from registry.settings import REGISTRY_PASSWORD_VARIABLE, REGISTRY_USERNAME_VARIABLE, ImageSettings, load_settings

SET_CREDENTIALS = (
    f"set {REGISTRY_USERNAME_VARIABLE} and {REGISTRY_PASSWORD_VARIABLE} (or log in with `docker login`, which "
    "writes ~/.docker/config.json)"
)


class RegistryAuthError(RegistryError):
    """Credentials are missing, unusable or refused; the message names the registry and what to set."""


class RegistryCredentials(BaseModel):
    """What to present to one registry: a username and password, or an identity (refresh) token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry: str
    username: str = ""
    password: SecretStr | None = None
    identity_token: SecretStr | None = None
    source: str = "settings"  # where they came from, for messages: "settings" or the Docker config's path

    def basic_pair(self) -> tuple[str, str]:
        """(username, secret) for HTTP basic auth; an identity token goes as the password (what ACR accepts)."""
        secret = self.password or self.identity_token
        return self.username, secret.get_secret_value() if secret else ""

    def basic_header(self) -> str:
        """The `Authorization: Basic ...` value."""
        return "Basic " + base64.b64encode(":".join(self.basic_pair()).encode()).decode()

    def docker_auth_config(self) -> dict[str, str]:
        """The Docker Engine's auth config (X-Registry-Auth) for a push or pull."""
        if self.identity_token is not None:
            return {"identitytoken": self.identity_token.get_secret_value(), "serveraddress": self.registry}
        username, password = self.basic_pair()
        return {"username": username, "password": password, "serveraddress": self.registry}

    def trivy_environment(self) -> dict[str, str]:
        """TRIVY_USERNAME / TRIVY_PASSWORD for a Trivy subprocess (never its command line). Empty for an identity
        token without a user name: Trivy then reads the same Docker config entry itself."""
        username, password = self.basic_pair()
        return {"TRIVY_USERNAME": username, "TRIVY_PASSWORD": password} if username else {}

    def describe(self) -> str:
        """Where the credentials came from, for error messages (never the secret)."""
        who = f"user {self.username!r}" if self.username else "an identity token"
        if self.source == "settings":
            return f"the credentials of {who}"
        return f"the credentials of {who} from the Docker config {self.source}"

    def remedy(self) -> str:
        """What to do when the registry refuses them."""
        if self.source == "settings":
            return f"fix {REGISTRY_USERNAME_VARIABLE} / {REGISTRY_PASSWORD_VARIABLE}"
        variables = f"{REGISTRY_USERNAME_VARIABLE} / {REGISTRY_PASSWORD_VARIABLE}"
        return f"run `docker login {self.registry}` again, or set {variables}"


def registry_host(address: str) -> str:
    """`host[:port]` of a registry address or Docker config key (`https://host/v1/` -> `host`)."""
    text = address.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    return text.split("/", 1)[0].lower()


def docker_config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG")
    return (Path(directory) if directory else Path.home() / ".docker") / "config.json"


def registry_credentials(
    registry: str, images: ImageSettings | None = None, *, docker_config: Path | None = None
) -> RegistryCredentials | None:
    """The credentials configured for `registry`, or None (anonymous). `images` defaults to the loaded settings."""
    policy = images if images is not None else load_settings().images
    host = registry_host(registry)
    configured = bool(policy.registry_username) or policy.registry_password is not None
    if configured and registry_host(policy.registry) == host:
        if not policy.registry_username or policy.registry_password is None:
            raise RegistryAuthError(
                f"registry {host}: {REGISTRY_USERNAME_VARIABLE} and {REGISTRY_PASSWORD_VARIABLE} go together; "
                "set both (or neither, for anonymous access)"
            )
        return RegistryCredentials(registry=host, username=policy.registry_username, password=policy.registry_password)
    return _from_docker_config(host, docker_config or docker_config_path())


def _from_docker_config(host: str, path: Path) -> RegistryCredentials | None:
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryAuthError(f"the Docker config {path} is not readable JSON ({type(exc).__name__})") from exc
    if not isinstance(config, dict):
        raise RegistryAuthError(f"the Docker config {path} is not a JSON object; fix it")
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and any(registry_host(key) == host for key in helpers):
        raise RegistryAuthError(
            f"registry {host}: the Docker config {path} names a credential helper for it, which curate does not "
            f"run; {SET_CREDENTIALS}"
        )
    auths = config.get("auths")
    entries = [v for k, v in auths.items() if registry_host(k) == host] if isinstance(auths, dict) else []
    if not entries:
        return None
    entry = entries[0] if isinstance(entries[0], dict) else {}
    found = _entry_credentials(host, entry, path)
    if found is None and config.get("credsStore"):
        raise RegistryAuthError(
            f"registry {host}: the Docker config {path} keeps its credentials in the credential store "
            f"{config['credsStore']!r}, which curate does not run; {SET_CREDENTIALS}"
        )
    return found


def _entry_credentials(host: str, entry: dict[str, object], path: Path) -> RegistryCredentials | None:
    username = entry.get("username") if isinstance(entry.get("username"), str) else ""
    password = entry.get("password") if isinstance(entry.get("password"), str) else ""
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RegistryAuthError(
                f"registry {host}: the `auth` of its entry in {path} is not base64 `user:password`; "
                f"run `docker login {host}` again"
            ) from exc
        username, _, password = decoded.partition(":")
    token = entry.get("identitytoken")
    identity = SecretStr(token) if isinstance(token, str) and token else None
    if identity is None and not (username and password):
        return None
    return RegistryCredentials(
        registry=host,
        username=str(username),
        password=SecretStr(str(password)) if password else None,
        identity_token=identity,
        source=str(path),
    )
