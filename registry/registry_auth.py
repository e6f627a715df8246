"""HTTP authentication for OCI registries as an `httpx.Auth`: basic auth and the distribution spec's bearer-token
challenge (https://distribution.github.io/distribution/spec/auth/token/).

Each request carries what is already known to work: the basic credentials once the registry asked for Basic, or
the cached bearer token of the request's scope (`repository:<name>:pull` for reads, `:pull,push` for writes). On a
401 the `WWW-Authenticate` challenge decides, and the request is retried once:
- `Basic realm=...`: with the configured credentials (none configured: the 401 stands and the client says what
  to set);
- `Bearer realm=...,service=...,scope=...`: with a token from the realm: GET with basic credentials, or
  anonymously without any, or POST `grant_type=refresh_token` with an identity token (OAuth2, what ACR and
  `docker login` with a token use). Tokens are cached per scope until shortly before they expire; a cached token
  the registry refuses (expired early, signing key rotated, narrower grant) is dropped and re-challenged.
Credentials go to a token realm only over https, or over plain http on loopback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from registry.credentials import SET_CREDENTIALS, RegistryAuthError, RegistryCredentials

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))')
_REPOSITORY_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)/")
_TOKEN_MARGIN_S = 10.0  # refresh this long before the token service says a token expires
_DEFAULT_TOKEN_LIFETIME_S = 60  # the spec's default when `expires_in` is absent
CLIENT_ID = "curate"


def is_loopback(host: str) -> bool:
    """Whether `host[:port]` is on this machine (plain http is allowed there, nowhere else)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "[::1]") or name.startswith("127.")


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, header: str) -> Challenge | None:
        scheme, _, rest = header.strip().partition(" ")
        if not scheme:
            return None
        params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _PARAM.finditer(rest)}
        return cls(scheme=scheme.lower(), params=params)


def request_scope(request: httpx.Request) -> str:
    """The token scope a registry request needs, as the distribution spec names it ("" when unknown)."""
    path = request.url.path
    if path == "/v2/_catalog":
        return "registry:catalog:*"
    match = _REPOSITORY_PATH.match(path)
    if match is None:
        return ""
    actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
    return f"repository:{match['name']}:{actions}"


class RegistryAuth(httpx.Auth):
    """Authenticates an `httpx.Client` to one registry; `credentials=None` is anonymous (public registries)."""

    def __init__(self, registry: str, credentials: RegistryCredentials | None, *, timeout: float = 30.0) -> None:
        self.registry = registry
        self.credentials = credentials
        self._basic = False  # the registry asked for Basic: send the credentials up front from now on
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, monotonic expiry)
        self._timeout = timeout
        self._token_http: httpx.Client | None = None  # made on the first challenge: most registries never send one
        self.token_requests = 0

    def close(self) -> None:
        if self._token_http is not None:
            self._token_http.close()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope = request_scope(request)
        self._authorize(request, scope)
        response = yield request
        if response.status_code != 401:
            return
        challenge = Challenge.parse(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return
        if challenge.scheme == "basic":
            if self.credentials is None or self._basic:
                return  # nothing to send, or the credentials were sent and refused: the 401 stands
            self._basic = True
            request.headers["Authorization"] = self.credentials.basic_header()
        elif challenge.scheme == "bearer":
            self._tokens.pop(scope, None)
            request.headers["Authorization"] = f"Bearer {self._token(challenge, scope)}"
        else:
            return
        yield request

    # ------------------------------------------------------------------------------------------ internals

    def _authorize(self, request: httpx.Request, scope: str) -> None:
        if self._basic and self.credentials is not None:
            request.headers["Authorization"] = self.credentials.basic_header()
            return
        token = self._cached(scope)
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"

    def _cached(self, scope: str) -> str | None:
        candidates = [scope]
        if scope.endswith(":pull"):
            candidates.append(scope + ",push")  # a push token also reads
        now = time.monotonic()
        for key in candidates:
            found = self._tokens.get(key)
            if found is not None and found[1] > now:
                return found[0]
        return None

    def _token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise RegistryAuthError(f"registry {self.registry} asked for a bearer token from {realm!r}: not a URL")
        if self.credentials is not None and parts.scheme == "http" and not is_loopback(parts.netloc):
            raise RegistryAuthError(
                f"registry {self.registry} asked for credentials at {realm} over plain http; refused (use https)"
            )
        scopes = (challenge.params.get("scope") or scope).split()
        self.token_requests += 1
        response = self._request_token(realm, challenge.params.get("service", ""), scopes)
        if response.status_code in (401, 403):
            raise RegistryAuthError(self._refused(parts.netloc, response.status_code))
        if response.status_code >= 400:
            raise RegistryAuthError(
                f"the token service {parts.netloc} of registry {self.registry} answered HTTP {response.status_code}"
            )
        try:
            body = response.json()
            token = str(body.get("token") or body.get("access_token") or "")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME_S)
        except (ValueError, AttributeError, TypeError) as exc:
            raise RegistryAuthError(f"the token service {parts.netloc} answered something that is not a token") from exc
        if not token:
            raise RegistryAuthError(f"the token service {parts.netloc} answered without a token")
        if scope:
            self._tokens[scope] = (token, time.monotonic() + max(lifetime - _TOKEN_MARGIN_S, 1.0))
        return token

    def _request_token(self, realm: str, service: str, scopes: list[str]) -> httpx.Response:
        credentials = self.credentials
        if self._token_http is None:
            self._token_http = httpx.Client(timeout=self._timeout)
        try:
            if credentials is not None and credentials.identity_token is not None:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": credentials.identity_token.get_secret_value(),
                    "service": service,
                    "scope": " ".join(scopes),
                    "client_id": CLIENT_ID,
                }
                return self._token_http.post(realm, data=form)
            params: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            auth = httpx.BasicAuth(*credentials.basic_pair()) if credentials is not None else None
            return self._token_http.get(realm, params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise RegistryAuthError(
                f"the token service {urlsplit(realm).netloc} of registry {self.registry} is unreachable "
                f"({type(exc).__name__})"
            ) from exc

    def _refused(self, realm_host: str, status: int) -> str:
        if self.credentials is None:
            answered = f"its token service {realm_host} answered {status}"
            return f"registry {self.registry} needs credentials ({answered}): {SET_CREDENTIALS}"
        return (
            f"registry {self.registry}: its token service {realm_host} refused {self.credentials.describe()} "
            f"(HTTP {status}): {self.credentials.remedy()}"
        )
