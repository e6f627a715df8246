"""The local image stack: a private Docker Engine, a CNCF distribution registry, the locally made base image.

`start_docker(state_dir)` starts `dockerd` (private unix socket, overlay2, no iptables, no bridge: containers
use `--network host` or `none`) and `docker-registry serve` on 127.0.0.1, both tracked by pid files under
`state_dir`; `stop_docker(state_dir)` stops them by pid and unmounts what dockerd leaves mounted. With
`registry_auth=True` the registry needs a login (htpasswd, bcrypt: the only format distribution accepts): a
random password made once per state dir, kept beside it (mode 0600), exported to clients as the settings'
registry credentials.
`ensure_base_image(docker_host)` imports a Debian bookworm root filesystem (made once with `debootstrap`
and cached as a tar) as `local/debian-python:bookworm`: no image can be pulled from a public registry here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import docker
from docker.errors import DockerException, ImageNotFound

from devstack.net import LOOPBACK, free_port, port_open, wait_for_http
from devstack.process import ManagedProcess, ProcessError, read_pid_file, start_process, stop_pid
from devstack.trivydb import write_trivy_db
from registry.settings import REGISTRY_PASSWORD_VARIABLE, REGISTRY_USERNAME_VARIABLE

BASE_IMAGE = "local/debian-python:bookworm"
BASE_SUITE = "bookworm"
BASE_MIRROR = "http://deb.debian.org/debian"
# python3 + venv (for pip's bundled wheel) and CA certificates; everything else comes from wheels.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache"
REGISTRY_USER = "curate"


class DockerStackError(ProcessError):
    """dockerd, the registry or the base image could not be set up; the message says what to check."""


@dataclass(frozen=True)
class DockerStack:
    """A running engine + registry: point the `docker` SDK at `docker_host`, push to `registry`."""

    docker_host: str
    registry: str
    state_dir: Path
    dockerd_pid: int
    registry_pid: int
    registry_login: RegistryLogin | None = None  # None: anonymous registry

    def to_json(self) -> dict[str, object]:
        """What `curate dev status` shows (the login's user, never its password)."""
        return {
            "docker_host": self.docker_host,
            "registry": self.registry,
            "state_dir": str(self.state_dir),
            "dockerd_pid": self.dockerd_pid,
            "registry_pid": self.registry_pid,
            "registry_auth": "htpasswd" if self.registry_login else "none",
            "registry_user": self.registry_login.username if self.registry_login else "",
        }


@dataclass(frozen=True)
class RegistryLogin:
    """The local registry's user and password (a local, generated secret; `repr` hides the password)."""

    username: str
    password: str = field(repr=False)

    def client_env(self) -> dict[str, str]:
        """The variables that give every client (CLI, flows, Trivy) these credentials through the settings."""
        return {REGISTRY_USERNAME_VARIABLE: self.username, REGISTRY_PASSWORD_VARIABLE: self.password}


def _exec_root(state_dir: Path) -> Path:
    # unix socket paths are limited to 108 bytes: keep the exec root (containerd's sockets live there) short.
    tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"curate-dkr-{tag}"


def _socket_path(state_dir: Path) -> Path:
    return _exec_root(state_dir) / "docker.sock"


def start_dockerd(state_dir: Path, *, data_root: Path | None = None, timeout: float = 60.0) -> tuple[str, int]:
    """Start a private dockerd; returns (DOCKER_HOST, pid). Reuses one already running for `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_path = state_dir / "dockerd.pid"
    sock = _socket_path(state_dir)
    host = f"unix://{sock}"
    running = read_pid_file(pid_path)
    if running is not None and sock.exists():
        return host, running
    if shutil.which("dockerd") is None:
        raise DockerStackError("dockerd is missing: run scripts/install-system.sh (Debian package docker.io)")
    exec_root = _exec_root(state_dir)
    exec_root.mkdir(parents=True, exist_ok=True)
    data = data_root or state_dir / "docker-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        "dockerd",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--storage-driver=overlay2",
        f"--host={host}",
        f"--data-root={data}",
        f"--exec-root={exec_root}",
        f"--pidfile={state_dir / 'dockerd.daemon.pid'}",
        "--log-level=warn",
    ]
    proc = start_process("dockerd", argv, log_path=state_dir / "dockerd.log", pid_path=pid_path)
    (state_dir / "dockerd.json").write_text(json.dumps({"exec_root": str(exec_root), "data_root": str(data)}))
    _wait_for_engine(proc, host, timeout)
    return host, proc.pid


def _wait_for_engine(proc: ManagedProcess, host: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise DockerStackError(f"dockerd exited while starting; log {proc.log_path}:\n{proc.log_tail()}")
        try:
            client = docker.DockerClient(base_url=host, timeout=5)
            try:
                client.ping()
                return
            finally:
                client.close()
        except DockerException:
            time.sleep(0.2)
    proc.stop()
    raise DockerStackError(f"dockerd did not answer on {host} within {timeout:.0f}s; see {proc.log_path}")


def stop_dockerd(state_dir: Path) -> None:
    """Stop the dockerd started for `state_dir` by its pid, unmount its network namespace, drop its exec root."""
    pid_path = state_dir / "dockerd.pid"
    pid = read_pid_file(pid_path)
    if pid is not None:
        stop_pid(pid, timeout=20.0)
    pid_path.unlink(missing_ok=True)
    exec_root = _exec_root(state_dir)
    netns = exec_root / "netns" / "default"
    if netns.exists():
        # dockerd leaves its default network namespace bind-mounted; "not mounted" is fine.
        subprocess.run(["umount", str(netns)], capture_output=True, check=False)
    _unmount_below(exec_root)
    if exec_root.is_dir() and not _mounted_below(exec_root):
        shutil.rmtree(exec_root, ignore_errors=True)


def registry_config(storage_dir: Path, port: int, auth: str = "") -> str:
    """distribution's config.yml; `auth` is a YAML `auth:` block (htpasswd_auth, or a token block), "" for none."""
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage_dir}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {LOOPBACK}:{port}\n"
    ) + auth


def htpasswd_auth(path: Path) -> str:
    return f"auth:\n  htpasswd:\n    realm: curate-local-registry\n    path: {path}\n"


def registry_login(state_dir: Path, username: str = REGISTRY_USER) -> tuple[RegistryLogin, Path]:
    """The registry's login and htpasswd file under `state_dir`, made once (random password, bcrypt hash)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    saved = state_dir / "registry-login.json"
    htpasswd = state_dir / "registry.htpasswd"
    if saved.is_file() and htpasswd.is_file():
        data = json.loads(saved.read_text())
        return RegistryLogin(username=str(data["username"]), password=str(data["password"])), htpasswd
    login = RegistryLogin(username=username, password=secrets.token_urlsafe(24))
    hashed = bcrypt.hashpw(login.password.encode(), bcrypt.gensalt(rounds=10)).decode()
    htpasswd.write_text(f"{username}:{hashed}\n")
    descriptor = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"username": login.username, "password": login.password}, handle)
    return login, htpasswd


def start_registry(
    state_dir: Path, *, port: int | None = None, timeout: float = 30.0, auth: str = ""
) -> tuple[str, int]:
    """Start `docker-registry serve` on 127.0.0.1; returns ("127.0.0.1:PORT", pid). Reuses a running one.

    `auth` is the config's `auth:` block (see `registry_config`); a running registry started with another one
    is an error: stop the stack first.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_path = state_dir / "registry.pid"
    info_path = state_dir / "registry.json"
    running = read_pid_file(pid_path)
    if running is not None and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("auth", "") != auth:
            raise DockerStackError(
                f"the registry at {info['address']} runs with another authentication setting; stop it "
                "(`curate dev down`) and start it again with the one you want (`curate dev up [--registry-auth]`)"
            )
        return str(info["address"]), running
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        raise DockerStackError("docker-registry is not installed: run scripts/install-system.sh")
    chosen = port or free_port()
    storage = state_dir / "registry-data"
    storage.mkdir(parents=True, exist_ok=True)
    config = state_dir / "registry.yml"
    config.write_text(registry_config(storage, chosen, auth))
    proc = start_process(
        "registry", [binary, "serve", str(config)], log_path=state_dir / "registry.log", pid_path=pid_path
    )
    address = f"{LOOPBACK}:{chosen}"
    try:
        wait_for_http(f"http://{address}/v2/", timeout=timeout)  # 401 counts: it answers
    except TimeoutError as exc:
        proc.stop()
        raise DockerStackError(f"the registry did not start on {address}:\n{proc.log_tail()}") from exc
    info_path.write_text(json.dumps({"address": address, "auth": auth}))
    return address, proc.pid


def stop_registry(state_dir: Path) -> None:
    pid_path = state_dir / "registry.pid"
    pid = read_pid_file(pid_path)
    if pid is not None:
        stop_pid(pid)
    pid_path.unlink(missing_ok=True)
    (state_dir / "registry.json").unlink(missing_ok=True)


def start_docker(
    state_dir: Path,
    *,
    registry_port: int | None = None,
    data_root: Path | None = None,
    registry_auth: bool = False,
) -> DockerStack:
    """Start (or reuse) the private dockerd and the registry for `state_dir`; what `curate dev up` calls.

    `registry_auth`: the registry needs the login `registry_login(state_dir)` (htpasswd)."""
    host, dockerd_pid = start_dockerd(state_dir, data_root=data_root)
    login, auth = None, ""
    if registry_auth:
        login, htpasswd = registry_login(state_dir)
        auth = htpasswd_auth(htpasswd)
    try:
        registry, registry_pid = start_registry(state_dir, port=registry_port, auth=auth)
    except ProcessError:
        stop_dockerd(state_dir)
        raise
    return DockerStack(
        docker_host=host,
        registry=registry,
        state_dir=state_dir,
        dockerd_pid=dockerd_pid,
        registry_pid=registry_pid,
        registry_login=login,
    )


def stop_docker(state_dir: Path) -> None:
    """Stop the registry and dockerd started by `start_docker(state_dir)`; safe to call twice."""
    stop_registry(state_dir)
    stop_dockerd(state_dir)


def registry_up(address: str) -> bool:
    host, _, port = address.partition(":")
    return port.isdigit() and port_open(int(port), host=host)


# --------------------------------------------------------------------------------------------- base image


def base_rootfs_tar(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The cached root filesystem tar of the base image, made with debootstrap on first use (~1 min)."""
    key = hashlib.sha256(json.dumps([BASE_SUITE, BASE_MIRROR, BASE_PACKAGES]).encode()).hexdigest()[:12]
    target = cache_dir / "base-images" / f"debian-{BASE_SUITE}-python-{key}.tar"
    if target.is_file():
        return target
    if shutil.which("debootstrap") is None:
        raise DockerStackError("debootstrap is not installed: run scripts/install-system.sh")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=target.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            result = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    BASE_SUITE,
                    str(rootfs),
                    BASE_MIRROR,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            _unmount_below(rootfs)
        if result.returncode != 0:
            raise DockerStackError(
                f"debootstrap failed (exit {result.returncode}); is {BASE_MIRROR} reachable?\n{result.stdout[-2000:]}"
            )
        # Drop apt lists and caches: they are not needed at run time and only grow the image.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for child in (rootfs / sub).glob("*"):
                if child.is_file():
                    child.unlink()
        partial = target.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "--one-file-system", "-cf", str(partial), "."],
            check=True,
        )
        os.replace(partial, target)
    return target


def _mounted_below(root: Path) -> list[str]:
    prefix = str(root.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True)


def _unmount_below(root: Path) -> None:
    """Unmount whatever is left mounted under `root` (debootstrap's proc, dockerd's netns) before removal."""
    for point in _mounted_below(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def ensure_base_image(docker_host: str, *, cache_dir: Path = DEFAULT_CACHE_DIR, tag: str = BASE_IMAGE) -> str:
    """Ensure `tag` exists in the engine at `docker_host` (imports the cached rootfs tar); returns its id."""
    client = docker.DockerClient(base_url=docker_host, timeout=600)
    try:
        try:
            image_id: str = client.images.get(tag).id
            return image_id
        except ImageNotFound:
            pass
        tar = base_rootfs_tar(cache_dir)
        repository, _, version = tag.partition(":")
        with tar.open("rb") as data:
            client.api.import_image_from_data(
                data, repository=repository, tag=version or "latest", changes=['CMD ["/bin/bash"]']
            )
        image_id = client.images.get(tag).id
        return image_id
    finally:
        client.close()


# --------------------------------------------------------------------------------------------- dev stack


DEV_REGISTRY_PORT = 5000


def start_dev_images(
    state_dir: Path, *, cache_dir: Path = DEFAULT_CACHE_DIR, registry_auth: bool = False
) -> tuple[DockerStack, dict[str, str]]:
    """What `curate dev up` needs for stage 3: engine + registry (port 5000 when free; with a login when
    `registry_auth`), the base image, and an (empty) offline Trivy database. Returns the stack and the environment
    its clients need (the registry's credentials included)."""
    port = DEV_REGISTRY_PORT if not port_open(DEV_REGISTRY_PORT) else None
    stack = start_docker(state_dir, registry_port=port, registry_auth=registry_auth)
    ensure_base_image(stack.docker_host, cache_dir=cache_dir)
    trivy_cache = state_dir / "trivy"
    if not (trivy_cache / "db" / "trivy.db").is_file():
        write_trivy_db(trivy_cache)
    env = {
        "DOCKER_HOST": stack.docker_host,
        "CURATE_IMAGES__REGISTRY": stack.registry,
        "CURATE_IMAGES__TRIVY_CACHE_DIR": str(trivy_cache),
        "CURATE_IMAGES__TRIVY_SKIP_DB_UPDATE": "true",
    }
    if stack.registry_login is not None:
        env.update(stack.registry_login.client_env())
    return stack, env


def build_and_push(stack: DockerStack, reference: str, dockerfile: str, files: dict[str, bytes] | None = None) -> str:
    """Build `dockerfile` (with `files` beside it, network none) as `reference`, push it; returns its digest.

    For images the tests and benchmarks make themselves (a stand-in runtime, a rebuild of an image)."""
    from registry.oci import ImageName, OciClient

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for path, data in {"Dockerfile": dockerfile.encode(), **(files or {})}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client = docker.DockerClient(base_url=stack.docker_host, timeout=600)
    try:
        client.images.build(fileobj=context, custom_context=True, tag=reference, rm=True, network_mode="none")
        client.images.push(reference)
    except DockerException as exc:
        raise DockerStackError(f"could not build and push {reference}: {exc}") from exc
    finally:
        client.close()
    name = ImageName.parse(reference)
    with OciClient.for_registry(stack.registry) as oci:
        digest = oci.manifest_digest(name.repository, name.ref)
    if digest is None:
        raise DockerStackError(f"{reference} is not in {stack.registry} after its push")
    return digest
