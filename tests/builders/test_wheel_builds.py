"""The build-time pieces that need no Docker: the loopback wheel server, releasing a transient build's wheels
layer by layer, and copying files out of an sdist."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import pytest

from builders.errors import ImageBuildError
from builders.images import WheelReleaser
from builders.local_wheels import extract_sdist_files
from builders.wheel_server import serve_wheels


def test_the_wheel_server_lists_and_serves_only_its_files(tmp_path: Path) -> None:
    wheel = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    (tmp_path / "secret.txt").write_text("not served")
    with serve_wheels([wheel]) as server:
        index = httpx.get(server.url).text
        assert 'href="demo_pkg-1.0-py3-none-any.whl"' in index and "secret" not in index
        assert httpx.get(server.url + wheel.name).content == b"wheel bytes"
        assert httpx.get(server.url + "secret.txt").status_code == 404
        assert httpx.get(server.url + "../secret.txt").status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


def test_wheels_are_released_once_every_layer_that_installs_them_is_committed(tmp_path: Path) -> None:
    shared, cuda, rest = (tmp_path / f"{n}.whl" for n in ("shared", "cuda", "rest"))
    for path in (shared, cuda, rest):
        path.write_bytes(b"x" * 10)
    needs = {
        shared: {"entrypoint-requirements.txt", "requirements.txt"},
        cuda: {"requirements-1.txt"},
        rest: {"requirements.txt"},
    }
    logged: list[str] = []
    releaser = WheelReleaser(needs, tmp_path, logged.append)
    steps = [
        "Step 4/12 : RUN python3 -m venv /opt/curation/entrypoint && pip install -r /tmp/entrypoint-requirements.txt",
        "Step 5/12 : COPY requirements-1.txt /tmp/requirements-1.txt",
        "Step 6/12 : RUN python3 -m venv /opt/venv && pip install -r /tmp/requirements-1.txt",
        "Step 7/12 : COPY requirements.txt /tmp/requirements.txt",
    ]
    for line in steps:
        releaser.step(line)
    assert shared.is_file() and rest.is_file() and not cuda.exists()  # the shared wheel waits for its last layer
    releaser.step("Step 8/12 : RUN /opt/venv/bin/pip install -r /tmp/requirements.txt && pip check")
    releaser.step("Step 9/12 : COPY entrypoint.py server.json /opt/curation/")
    assert not shared.exists() and not rest.exists()
    assert len(logged) == 2


def _sdist(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"pkg-1.0/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(f"pkg-1.0/{link}")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return path


def test_sdist_files_are_copied_by_their_last_part_and_links_refused(tmp_path: Path) -> None:
    files = {"vendor/tool/convert.py": b"print()", "vendor/tool/conversion/a.py": b"A", "other.py": b"no"}
    sdist = _sdist(tmp_path / "pkg-1.0.tar.gz", files)
    extract_sdist_files(sdist, ("vendor/tool/convert.py", "vendor/tool/conversion"), tmp_path / "out")
    assert (tmp_path / "out" / "convert.py").read_bytes() == b"print()"
    assert (tmp_path / "out" / "conversion" / "a.py").read_bytes() == b"A"
    assert not (tmp_path / "out" / "other.py").exists()
    linked = _sdist(tmp_path / "bad.tar.gz", {"vendor/tool/x.py": b""}, link="vendor/tool/passwd")
    with pytest.raises(ImageBuildError, match="refusing"):
        extract_sdist_files(linked, ("vendor/tool",), tmp_path / "out2")
    with pytest.raises(ImageBuildError, match="has no"):
        extract_sdist_files(sdist, ("vendor/missing",), tmp_path / "out3")
