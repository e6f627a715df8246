"""The shared entrypoint's fetch, verification and server command, run on the host (it is plain Python plus
model-signing, the same release the entrypoint layer locks)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builders.recipes import model_entrypoint as ep
from registry.blobs import MANIFEST_NAME, SIGNATURE_NAME, SIGNATURES_DIR, signature_blob_name
from registry.keys import KeyPair
from registry.runtimes import get_runtime
from registry.schema import Signature
from tests.builders.staged import new_key
from validators.weights_signing import sign_weights

REPO = "org/model"
REVISION = "b" * 40
FILES = {"config.json": b'{"a": 1}', "model.safetensors": b"x" * 1000, "sub/tokenizer.json": b"{}"}


def _manifest(
    files: dict[str, bytes], revision: str = REVISION, signature: Signature | None = None
) -> dict[str, object]:
    doc: dict[str, object] = {
        "ref": {"repo_id": REPO, "revision": revision},
        "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()],
    }
    if signature is not None:
        doc["signature"] = signature.model_dump(mode="json")
    return doc


def _staged(root: Path, key: KeyPair, files: dict[str, bytes] = FILES, *, legacy: bool = False) -> Path:
    """A staged model as the stage flow lays it out: files, the manifest and the content-addressed signature it
    names (`legacy`: the single `curation.sig` of stagings before that, and a manifest naming none)."""
    signed = root / "signed"
    for name, data in files.items():
        (signed / name).parent.mkdir(parents=True, exist_ok=True)
        (signed / name).write_bytes(data)
    staged = root / "staged"
    signature = sign_weights(signed, root / SIGNATURE_NAME, key)
    blob = staged / (SIGNATURE_NAME if legacy else signature_blob_name(signature))
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes((root / SIGNATURE_NAME).read_bytes())
    for name, data in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(data)
    (staged / MANIFEST_NAME).write_text(json.dumps(_manifest(files, signature=None if legacy else signature)))
    return staged


def _env(staged: Path, key: KeyPair, hf_home: Path, **extra: str) -> dict[str, str]:
    return {
        "MODEL_DIR": str(staged),
        "MODEL_ID": REPO,
        "MODEL_REVISION": REVISION,
        "MODEL_REGION": "eastus",
        "MODEL_SIGNING_PUBLIC_KEY": key.public_path.read_text(),
        "HF_HOME": str(hf_home),
        **extra,
    }


def _spec(tmp_path: Path, runtime: str) -> str:
    server = get_runtime(runtime).server
    path = tmp_path / f"{runtime}-server.json"
    path.write_text(server.model_dump_json())
    return str(path)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "a\\b", "", "a//b", "x\x00y", 7])
def test_hostile_names_are_refused(name: object) -> None:
    with pytest.raises(ep.FetchError):
        ep.safe_name(name)


def test_manifest_parsing_skips_reserved_and_checks_fields() -> None:
    doc = _manifest({"config.json": b"{}", "curation.sig": b"sig"}, "a" * 40)
    revision, files = ep.parse_manifest(doc)
    assert revision == "a" * 40
    assert [f[0] for f in files] == ["config.json"]
    with pytest.raises(ep.FetchError):
        ep.parse_manifest({"files": [{"name": "a", "size": "1", "sha256": "0" * 64}]})
    with pytest.raises(ep.FetchError):
        ep.parse_manifest({"nope": []})


def test_blob_url_keeps_the_sas_query() -> None:
    url = ep.blob_url("http://127.0.0.1:10000/eastus/weights?sv=1&sig=abc", "org/m/rev/model file.json")
    assert url == "http://127.0.0.1:10000/eastus/weights/org/m/rev/model%20file.json?sv=1&sig=abc"


def test_the_contract_names_match_the_pipeline() -> None:
    assert (ep.MANIFEST_NAME, ep.SIGNATURE_NAME, ep.SIGNATURES_DIR) == (MANIFEST_NAME, SIGNATURE_NAME, SIGNATURES_DIR)


def test_the_signature_is_the_one_the_manifest_names_by_its_sha256(tmp_path: Path) -> None:
    key = new_key(tmp_path / "key")
    legacy = _staged(tmp_path / "legacy", key, legacy=True)
    ep.prepare([], _env(legacy, key, tmp_path / "hf-legacy", CURATION_SERVER_SPEC=_spec(tmp_path, "vllm")))
    staged = _staged(tmp_path / "new", key)
    (blob,) = (staged / SIGNATURES_DIR).iterdir()
    blob.write_bytes(blob.read_bytes() + b" ")  # still parseable JSON, no longer the named content
    with pytest.raises(ep.FetchError, match="its sha256 is not the one the manifest names"):
        ep.prepare([], _env(staged, key, tmp_path / "hf", CURATION_SERVER_SPEC=_spec(tmp_path, "vllm")))
    doc = json.loads((staged / MANIFEST_NAME).read_text())
    doc["signature"]["signature_digest"] = "sha256:../../x"
    with pytest.raises(ep.FetchError, match="names no valid signature digest"):
        ep.signature_blob(doc, "eastus")


def test_a_signed_model_is_laid_out_verified_and_served_from_the_local_copy(tmp_path: Path) -> None:
    key = new_key(tmp_path / "key")
    staged = _staged(tmp_path, key)
    hf = tmp_path / "hf"
    env = _env(staged, key, hf, CURATION_SERVER_SPEC=_spec(tmp_path, "vllm"), MODEL_BLOB_URL="")
    command, server_env = ep.prepare(["--model-id", REPO, "--host", "127.0.0.1", "--port", "8123"], env)
    snap = hf / "hub" / "models--org--model" / "snapshots" / REVISION
    assert (snap / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (snap / "sub" / "tokenizer.json").read_bytes() == b"{}"
    assert (hf / "hub" / "models--org--model" / "refs" / "main").read_text() == REVISION
    assert command == [
        "/opt/venv/bin/vllm", "serve", str(snap), "--served-model-name", REPO, "--host", "127.0.0.1", "--port", "8123",
    ]  # fmt: skip
    # The server never sees the SAS nor the key, and cannot go to a hub.
    assert "MODEL_SIGNING_PUBLIC_KEY" not in server_env and "MODEL_BLOB_URL" not in server_env
    assert server_env["HF_HUB_OFFLINE"] == "1"
    assert not list(hf.glob("signing-key-*"))


def test_each_runtime_gets_the_model_its_way(tmp_path: Path) -> None:
    key = new_key(tmp_path / "key")
    staged = _staged(tmp_path, key, {**FILES, "model-q4_k_m.gguf": b"GGUF" + b"\0" * 60})
    hf = tmp_path / "hf"
    snap = hf / "hub" / "models--org--model" / "snapshots" / REVISION

    def command(runtime: str, *args: str) -> list[str]:
        env = _env(staged, key, hf, CURATION_SERVER_SPEC=_spec(tmp_path, runtime))
        return ep.prepare(list(args), env)[0]

    assert command("hf-serve", "--port", "1") == ["transformers", "serve", "--device", "cpu", "--port", "1"]
    llama = command("llama-cpp", "--n_ctx", "2048")
    assert llama[:5] == ["/opt/venv/bin/python", "-m", "llama_cpp.server", "--model", str(snap / "model-q4_k_m.gguf")]
    assert llama[5:] == ["--model_alias", REPO, "--interrupt_requests", "False", "--n_ctx", "2048"]
    infinity = command("infinity")
    assert infinity[:4] == ["infinity_emb", "v2", "--model-id", str(snap)]
    sglang = command("sglang")
    assert sglang[3:7] == ["--model-path", str(snap), "--served-model-name", REPO]
    # NIM is configured by environment: the verified copy and the served name are variables, not arguments.
    nim_argv, nim_env = ep.prepare([], _env(staged, key, hf, CURATION_SERVER_SPEC=_spec(tmp_path, "nim")))
    assert nim_argv == ["/opt/nim/start_server.sh"]
    assert nim_env["NIM_MODEL_NAME"] == str(snap) and nim_env["NIM_SERVED_MODEL_NAME"] == REPO
    # The converter use: any command, with the verified directory substituted.
    assert command("llama-cpp", "--exec", "python", "convert.py", "{model_dir}") == ["python", "convert.py", str(snap)]


def test_a_caller_cannot_name_another_model(tmp_path: Path) -> None:
    key = new_key(tmp_path / "key")
    env = _env(_staged(tmp_path, key), key, tmp_path / "hf", CURATION_SERVER_SPEC=_spec(tmp_path, "vllm"))
    for bad in (["--model", "Qwen/Qwen3-32B"], ["--tokenizer=Qwen/Qwen3-32B"], ["--served-model-name", "x"]):
        with pytest.raises(ep.UsageError, match="may not be passed"):
            ep.prepare(bad, env)


def _refusal(tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    calls: list[list[str]] = []
    monkey_env = dict(env)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in monkey_env.items():
            mp.setenv(name, value)
        code = ep.main([], exec_fn=lambda _p, argv, _e: calls.append(argv))
    assert code == 3 and not calls, "the server must not start"
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_tampered_file_refuses_to_start_naming_file_and_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = new_key(tmp_path / "key")
    staged = _staged(tmp_path, key)
    (staged / "model.safetensors").write_bytes(b"y" * 1000)
    line = _refusal(tmp_path, _env(staged, key, tmp_path / "hf"), capsys)
    assert line.startswith("curation-entrypoint: refusing to start: model.safetensors in region eastus")
    assert "sha256 does not match" in line
    assert not list((tmp_path / "hf").rglob("model.safetensors*"))


def test_a_truncated_file_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = new_key(tmp_path / "key")
    staged = _staged(tmp_path, key)
    (staged / "model.safetensors").write_bytes(b"x" * 400)
    line = _refusal(tmp_path, _env(staged, key, tmp_path / "hf"), capsys)
    assert "model.safetensors in region eastus" in line and "truncated: 400 of 1000 bytes" in line


def test_another_key_or_a_doctored_manifest_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = new_key(tmp_path / "key")
    staged = _staged(tmp_path, key)
    other = new_key(tmp_path / "other")
    line = _refusal(tmp_path, _env(staged, other, tmp_path / "hf"), capsys)
    assert f"{SIGNATURES_DIR}" in line and "in region eastus" in line and "public key" in line
    # A blob replaced together with its manifest entry still differs from what was signed.
    (staged / "config.json").write_bytes(b'{"a": 2}')
    doctored = json.loads((staged / MANIFEST_NAME).read_text())
    doctored["files"] = _manifest({**FILES, "config.json": b'{"a": 2}'})["files"]
    (staged / MANIFEST_NAME).write_text(json.dumps(doctored))
    line = _refusal(tmp_path, _env(staged, key, tmp_path / "hf"), capsys)
    assert "config.json in region eastus" in line and "differs from the signed one" in line


def test_usage_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key(tmp_path / "key")
    env = _env(_staged(tmp_path, key), key, tmp_path / "hf")
    for name, value in {**env, "MODEL_SIGNING_PUBLIC_KEY": ""}.items():
        monkeypatch.setenv(name, value)
    assert ep.main([], exec_fn=lambda *_: None) == 2  # no key: nothing is served unsigned
    monkeypatch.setenv("MODEL_SIGNING_PUBLIC_KEY", env["MODEL_SIGNING_PUBLIC_KEY"])
    monkeypatch.setenv("MODEL_REVISION", "main")
    assert ep.main([], exec_fn=lambda *_: None) == 2  # a branch name is not a staged revision
