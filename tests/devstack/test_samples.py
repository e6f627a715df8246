"""The sample repositories: deterministic, cached, data only, and the real models really work."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pickletools
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from devstack.hub_server import HubServer
from devstack.repostore import RepoStore
from devstack.samples import SampleKind, SampleSet, build_samples, bump_revision, export_repo
from devstack.samples import expectations as ex
from devstack.samples.build import MARKER, artifact_manifest
from devstack.samples.real import minilm_files
from registry.schema import Verdict

WEIGHT_SUFFIXES = (".safetensors", ".bin")
SAFE_PICKLE_GLOBALS = {
    "torch._utils _rebuild_tensor_v2",
    "torch FloatStorage",
    "collections OrderedDict",
}


def front_matter(data: bytes) -> dict[str, object]:
    text = data.decode()
    assert text.startswith("---\n")
    loaded = yaml.safe_load(text.split("---\n")[1])
    assert isinstance(loaded, dict)
    return loaded


# ------------------------------------------------------------------------------------------- expectations


def test_finding_codes_are_dotted_unique_and_used() -> None:
    assert len(set(ex.ALL_CODES)) == len(ex.ALL_CODES)
    for code in ex.ALL_CODES:
        area, _, problem = code.partition(".")
        assert area and problem and code == code.lower() and " " not in code
    used = {code for item in ex.EXPECTATIONS for code in item.expected_codes}
    assert used == set(ex.ALL_CODES)


def test_verdicts_follow_the_codes() -> None:
    for item in ex.EXPECTATIONS:
        if item.expected_verdict is Verdict.ACCEPTED:
            assert item.expected_codes == ()
        else:
            assert item.expected_codes, item.repo_id
    assert {item.kind for item in ex.EXPECTATIONS} == set(SampleKind)


# ------------------------------------------------------------------------------------------- the shared build


def test_every_sample_is_in_the_store_with_its_meta(sample_set: SampleSet) -> None:
    store = sample_set.store()
    assert sample_set.repo_ids == tuple(item.repo_id for item in ex.EXPECTATIONS)
    for sample in sample_set.samples:
        commit = store.resolve(sample.repo_id)
        assert commit is not None and commit.sha == sample.revision
        assert commit.parent is None
        assert {path: entry.sha256 for path, entry in commit.files.items()} == sample.files
        meta = store.meta(sample.repo_id)
        assert meta.gated == ("manual" if sample.gated else False)
        assert meta.private is sample.private
        assert (meta.likes, meta.downloads, meta.trending_score) == (
            sample.likes,
            sample.downloads,
            sample.trending_score,
        )
        card = front_matter(store.read_bytes(commit, "README.md"))
        assert card["license"] == sample.license
        assert card["pipeline_tag"] == sample.task
        assert card["library_name"] == sample.library_name


def test_trending_order_puts_the_real_models_first(sample_set: SampleSet) -> None:
    scores = [s.trending_score for s in sample_set.samples]
    assert len(set(scores)) == len(scores)
    listed = sample_set.trending()
    assert [s.repo_id for s in listed[:2]] == [ex.SMOLLM2, ex.MINILM]
    assert ex.PRIVATE not in [s.repo_id for s in listed]
    assert ex.PRIVATE in [s.repo_id for s in sample_set.trending(with_token=True)]


def test_a_second_build_reuses_the_first(sample_set: SampleSet) -> None:
    refs = sample_set.root / "repos" / ex.SMOLLM2 / "refs.json"
    before = (refs.stat().st_mtime_ns, (sample_set.root / MARKER).stat().st_mtime_ns)
    again = build_samples(sample_set.root)
    assert again == sample_set
    assert (refs.stat().st_mtime_ns, (sample_set.root / MARKER).stat().st_mtime_ns) == before


def test_real_repos_match_their_sources(sample_set: SampleSet) -> None:
    smol = sample_set.get(ex.SMOLLM2)
    # The store holds exactly the files of the cached conversion, as recorded when it was made.
    manifest = artifact_manifest(sample_set.artifacts["smollm2"])
    assert smol.files == manifest
    for path, digest in manifest.items():
        assert hashlib.sha256((sample_set.artifacts["smollm2"] / path).read_bytes()).hexdigest() == digest
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "LICENSE",
        "special_tokens_map.json",
        "generation_config.json",
        "README.md",
    } <= set(smol.files)
    smol_head = sample_set.store().resolve(ex.SMOLLM2)
    assert smol_head is not None
    config = json.loads(sample_set.store().read_bytes(smol_head, "config.json"))
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config

    minilm = sample_set.get(ex.MINILM)
    sources = minilm_files()
    assert set(minilm.files) == set(sources)
    for path, source in sources.items():
        assert minilm.files[path] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert {"modules.json", "sentence_bert_config.json", "1_Pooling/config.json", "model.safetensors"} <= set(
        minilm.files
    )
    for sample in (smol, minilm):
        weights = [p for p in sample.files if p.endswith((*WEIGHT_SUFFIXES, ".pt", ".pkl"))]
        assert weights == ["model.safetensors"], sample.repo_id


def test_reject_repos_hold_what_they_are_about(sample_set: SampleSet) -> None:
    store = sample_set.store()
    custom = store.resolve(ex.CUSTOM_CODE)
    assert custom is not None
    assert json.loads(store.read_bytes(custom, "config.json"))["auto_map"]["AutoModelForCausalLM"].startswith(
        "modeling_custom."
    )
    assert "modeling_custom.py" in custom.files

    pickle_only = sample_set.get(ex.PICKLE_ONLY)
    assert "pytorch_model.bin" in pickle_only.files
    assert not [p for p in pickle_only.files if p.endswith(".safetensors")]

    nc = store.resolve(ex.NONCOMMERCIAL)
    assert nc is not None and b"NonCommercial" in store.read_bytes(nc, "LICENSE")
    review = store.resolve(ex.LLAMA3_LICENSE)
    assert review is not None
    card = front_matter(store.read_bytes(review, "README.md"))
    assert (card["license"], card["license_name"]) == ("other", "llama3")


def test_reject_repos_are_data_only(sample_set: SampleSet) -> None:
    store = sample_set.store()
    for sample in sample_set.samples:
        code = sorted(p for p in sample.files if p.endswith((".py", ".pyc", ".so", ".sh", ".pkl", ".pickle")))
        if sample.kind is SampleKind.REJECT_CUSTOM_CODE:
            assert code == ["configuration_custom.py", "modeling_custom.py"]
        else:
            assert code == [], sample.repo_id

    custom = store.resolve(ex.CUSTOM_CODE)
    assert custom is not None
    for path in ("configuration_custom.py", "modeling_custom.py"):
        tree = ast.parse(store.read_bytes(custom, path))
        # The first statement raises: importing the file can run nothing else.
        assert isinstance(tree.body[0], ast.Raise), path

    # The pickle is never unpickled: its opcodes reference only torch's tensor-rebuilding globals.
    pickle_commit = store.resolve(ex.PICKLE_ONLY)
    assert pickle_commit is not None
    data = store.read_bytes(pickle_commit, "pytorch_model.bin")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.read("archive/.data/serialization_id") == b"0" * 40
        payload = archive.read("archive/data.pkl")
    strings: list[str] = []
    globals_seen: set[str] = set()
    for opcode, arg, _ in pickletools.genops(payload):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(str(arg))
        elif opcode.name == "GLOBAL":
            globals_seen.add(str(arg))
        elif opcode.name == "STACK_GLOBAL":
            globals_seen.add(" ".join(strings[-2:]))
        assert opcode.name not in ("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4")
    assert globals_seen and globals_seen <= SAFE_PICKLE_GLOBALS


# ------------------------------------------------------------------------------------------- determinism


def test_tiny_and_reject_repos_are_deterministic(tmp_path: Path, sample_set: SampleSet) -> None:
    """Two builds from nothing (separate weight caches) and the shared build agree byte for byte."""
    first = build_samples(tmp_path / "a", include_real=False, cache_dir=tmp_path / "cache-a")
    second = build_samples(tmp_path / "b", include_real=False, cache_dir=tmp_path / "cache-b")
    assert [(s.repo_id, s.revision, s.files) for s in first.samples] == [
        (s.repo_id, s.revision, s.files) for s in second.samples
    ]
    shared = {s.repo_id: s.revision for s in sample_set.samples}
    assert {s.repo_id: s.revision for s in first.samples} == {r: shared[r] for r in first.repo_ids}
    assert not any(s.real for s in first.samples) and len(first.samples) == len(ex.EXPECTATIONS) - 2


def test_bump_revision_makes_a_new_resolvable_revision(tmp_path: Path) -> None:
    built = build_samples(tmp_path / "store", include_real=False)
    store = built.store()
    old = built.get(ex.TINY_LLAMA).revision
    new = bump_revision(store, ex.TINY_LLAMA)
    assert new != old
    head = store.resolve(ex.TINY_LLAMA)
    assert head is not None and head.sha == new and head.parent == old
    assert store.resolve(ex.TINY_LLAMA, old) is not None
    changed = {p for p in head.files if head.files[p] != store.get_commit(ex.TINY_LLAMA, old).files.get(p)}
    assert changed == {"README.md"}
    assert bump_revision(store, ex.TINY_LLAMA) not in (old, new)

    other = build_samples(tmp_path / "other", include_real=False)
    assert bump_revision(other.store(), ex.TINY_LLAMA) == new
    # Building again repairs the changed repo back to its original revision.
    rebuilt = build_samples(tmp_path / "store", include_real=False)
    assert store.refs(ex.TINY_LLAMA)["main"] == old == rebuilt.get(ex.TINY_LLAMA).revision


# ------------------------------------------------------------------------------------------- the models run


@pytest.mark.parametrize("repo_id", [ex.TINY_LLAMA, ex.TINY_QWEN2])
def test_tiny_models_load_and_generate(sample_set: SampleSet, tmp_path: Path, repo_id: str) -> None:
    local = export_repo(sample_set.store(), repo_id, tmp_path / "model")
    tokenizer: Any = AutoTokenizer.from_pretrained(local)
    model: Any = AutoModelForCausalLM.from_pretrained(local)
    assert model.config.tie_word_embeddings is False
    assert model.get_input_embeddings().weight.shape[0] == 4096
    assert len(tokenizer) == 4096
    inputs: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello!"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.integration
def test_smollm2_answers_paris(sample_set: SampleSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = export_repo(sample_set.store(), ex.SMOLLM2, tmp_path / "smollm2")
    tokenizer: Any = AutoTokenizer.from_pretrained(local)
    model: Any = AutoModelForCausalLM.from_pretrained(local)
    assert model.dtype == torch.bfloat16
    inputs: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


@pytest.mark.integration
def test_minilm_embeds_similar_sentences_closer(
    sample_set: SampleSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = export_repo(sample_set.store(), ex.MINILM, tmp_path / "minilm")
    tokenizer: Any = AutoTokenizer.from_pretrained(local)
    model: Any = AutoModel.from_pretrained(local)
    sentences = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply today.",
    ]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert embeddings.shape == (3, 384)
    similar = float(embeddings[0] @ embeddings[1])
    dissimilar = float(embeddings[0] @ embeddings[2])
    assert similar > dissimilar + 0.2


def test_cli_entry_point_builds_into_a_root(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devstack.samples", "--root", str(tmp_path / "cli"), "--no-real", "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    built = SampleSet.model_validate_json(proc.stdout)
    assert RepoStore(tmp_path / "cli").refs(ex.GATED)["main"] == built.get(ex.GATED).revision


@pytest.mark.integration
def test_the_hub_test_server_serves_the_samples(
    sample_set: SampleSet, hub_factory: Callable[..., HubServer], hf_cache: Path
) -> None:
    hub = hub_factory(sample_set.store(), tokens=["hf_samples"])
    anonymous = HfApi(endpoint=hub.url, token=False)
    listed = [m.id for m in anonymous.list_models(sort="trending_score", limit=50)]
    assert listed == [s.repo_id for s in sample_set.trending()]
    with_token = HfApi(endpoint=hub.url, token="hf_samples")
    assert ex.PRIVATE in [m.id for m in with_token.list_models(sort="trending_score", limit=50)]

    tiny = sample_set.get(ex.TINY_LLAMA)
    local = snapshot_download(ex.TINY_LLAMA, revision=tiny.revision, endpoint=hub.url, token=False, cache_dir=hf_cache)
    for path, digest in tiny.files.items():
        assert hashlib.sha256((Path(local) / path).read_bytes()).hexdigest() == digest
    with pytest.raises(GatedRepoError):
        hf_hub_download(ex.GATED, "config.json", endpoint=hub.url, token=False, cache_dir=hf_cache)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(ex.PRIVATE)
