"""The adversarial corpus: hostile and broken repositories, generated here, served by the Hub test server and
screened through the real client. Each must end with the expected verdict and finding code, and no planted
payload may ever run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.hub_server import HubServer
from devstack.repostore import RepoStore
from devstack.samples import licenses as texts
from registry import finding_codes as codes
from registry.hub import HfHubSource
from registry.schema import ScreeningReport, Verdict
from registry.settings import Settings, load_settings
from scanners.screen import screen_repo
from tests.fixtures.hub import DEFAULT_CARD, model_card, tiny_safetensors
from tests.scanners.hostile import (
    global_call,
    inst_call,
    npy,
    npz,
    safetensors_bytes,
    stack_global_call,
    stack_global_via_memo,
    tensor,
    torch_zip,
)

pytestmark = pytest.mark.integration

ORG = "corpus"
TOKEN = "hf_corpus_token_0123456789"
A = Verdict.ACCEPTED
R = Verdict.NEEDS_REVIEW
X = Verdict.REJECTED


@dataclass(frozen=True)
class Case:
    name: str
    verdict: Verdict
    codes: tuple[str, ...]
    files: Callable[[Path], dict[str, bytes]] = lambda marker: {}
    card: dict[str, Any] | None = field(default_factory=lambda: dict(DEFAULT_CARD))
    readme_body: str = "# A corpus model\n"
    drop: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    token: bool = False


def _cmd(marker: Path) -> str:
    return f"touch {marker}"


def _auto_map(name: str) -> Callable[[Path], dict[str, bytes]]:
    return lambda m: {name: json.dumps({"auto_map": {"AutoModel": "modeling_evil.EvilModel"}}).encode()}


_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "vocab_size": 32000,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "tie_word_embeddings": False,
}

CASES: tuple[Case, ...] = (
    # --- a clean baseline, so every other case differs from an accepted repo by one planted problem
    Case("clean", A, (codes.LICENSE_ALLOWED,)),
    # --- pickles: os.system / subprocess / builtins.exec via GLOBAL, STACK_GLOBAL and INST
    Case(
        "pickle-global-os-system",
        X,
        (codes.PICKLE_DANGEROUS_IMPORT, codes.FORMAT_PICKLE),
        lambda m: {"pytorch_model.bin": global_call("os", "system", _cmd(m))},
    ),
    Case(
        "pickle-global-builtins-exec",
        X,
        (codes.PICKLE_DANGEROUS_IMPORT,),
        lambda m: {"model.pkl": global_call("builtins", "exec", f"open('{m}', 'w')")},
    ),
    Case(
        "pickle-stack-global-subprocess",
        X,
        (codes.PICKLE_DANGEROUS_IMPORT,),
        lambda m: {"model.pt": stack_global_call("subprocess", "call", _cmd(m))},
    ),
    Case(
        "pickle-stack-global-memo-eval",
        X,
        (codes.PICKLE_DANGEROUS_IMPORT,),
        lambda m: {"model.ckpt": stack_global_via_memo("builtins", "eval", f"open('{m}', 'w')")},
    ),
    Case(
        "pickle-inst-os-system",
        X,
        (codes.PICKLE_DANGEROUS_IMPORT,),
        lambda m: {"weights.pth": inst_call("os", "system", _cmd(m))},
    ),
    Case(
        "pickle-inst-subprocess",
        X,
        (codes.PICKLE_DANGEROUS_IMPORT,),
        lambda m: {"extra/weights.pkl": inst_call("subprocess", "Popen", _cmd(m))},
    ),
    Case(
        "pickle-torch-zip-data-pkl",
        X,
        (codes.PICKLE_DANGEROUS_IMPORT,),
        lambda m: {"pytorch_model.bin": torch_zip(global_call("posix", "system", _cmd(m)))},
    ),
    Case(
        "pickle-only-no-safetensors",
        X,
        (codes.FORMAT_PICKLE, codes.WEIGHTS_NO_SAFETENSORS),
        lambda m: {"pytorch_model.bin": torch_zip(b"\x80\x02}q\x00.")},
        drop=("model.safetensors",),
    ),
    Case("pickle-malformed", R, (codes.PICKLE_MALFORMED,), lambda m: {"training_args.bin": b"\x80\x02\xff\xfe"}),
    # --- custom code: auto_map in every config kind, cross-repo references, .py in subfolders, handlers
    Case("auto-map-config", X, (codes.REMOTE_CODE_AUTO_MAP,), _auto_map("config.json")),
    Case("auto-map-tokenizer-config", X, (codes.REMOTE_CODE_AUTO_MAP,), _auto_map("tokenizer_config.json")),
    Case("auto-map-processor-config", X, (codes.REMOTE_CODE_AUTO_MAP,), _auto_map("processor_config.json")),
    Case(
        "auto-map-preprocessor-config",
        X,
        (codes.REMOTE_CODE_AUTO_MAP,),
        _auto_map("preprocessor_config.json"),
    ),
    Case(
        "auto-map-feature-extractor",
        X,
        (codes.REMOTE_CODE_AUTO_MAP,),
        _auto_map("feature_extractor_config.json"),
    ),
    Case(
        "auto-map-cross-repo",
        X,
        (codes.REMOTE_CODE_AUTO_MAP, codes.REMOTE_CODE_CROSS_REPO),
        lambda m: {
            "tokenizer_config.json": json.dumps(
                {"auto_map": {"AutoTokenizer": ["someone/else--tokenization_evil.EvilTokenizer", None]}}
            ).encode()
        },
    ),
    # --- what speech and vision-language repos carry: processor configs, feature extractors, numpy tables
    Case(
        "auto-map-nested-image-processor",
        X,
        (codes.REMOTE_CODE_AUTO_MAP,),
        lambda m: {
            "processor_config.json": json.dumps(
                {
                    "processor_class": "LlavaProcessor",
                    "image_processor": {"auto_map": {"AutoImageProcessor": "image_processing_evil.EvilProcessor"}},
                }
            ).encode()
        },
    ),
    Case(
        "auto-map-video-preprocessor",
        X,
        (codes.REMOTE_CODE_AUTO_MAP,),
        _auto_map("video_preprocessor_config.json"),
    ),
    Case("auto-map-audio-tokenizer", X, (codes.REMOTE_CODE_AUTO_MAP,), _auto_map("audio_tokenizer_config.json")),
    Case(
        "auto-map-feature-extractor-cross-repo",
        X,
        (codes.REMOTE_CODE_AUTO_MAP, codes.REMOTE_CODE_CROSS_REPO),
        lambda m: {
            "processor/preprocessor_config.json": json.dumps(
                {
                    "feature_extractor_type": "EvilFeatureExtractor",
                    "auto_map": {"AutoFeatureExtractor": "someone/else--feature_extraction_evil.EvilFeatureExtractor"},
                }
            ).encode()
        },
    ),
    Case(
        "speech-processor-clean",
        A,
        (codes.LICENSE_ALLOWED,),
        lambda m: {
            "preprocessor_config.json": json.dumps(
                {"feature_extractor_type": "WhisperFeatureExtractor", "processor_class": "WhisperProcessor"}
            ).encode(),
            "normalizer.json": b"{}",
            "mel_filters.npz": npz({"mel_80.npy": npy("<f4", b"\x00" * 16, shape="(2, 2)")}),
        },
    ),
    Case(
        "numpy-object-array-os-system",
        X,
        (codes.FORMAT_NUMPY_OBJECT, codes.PICKLE_DANGEROUS_IMPORT),
        lambda m: {"speaker_embeddings.npy": npy("|O", global_call("os", "system", _cmd(m)))},
    ),
    Case(
        "numpy-object-in-npz",
        X,
        (codes.FORMAT_NUMPY_OBJECT, codes.PICKLE_DANGEROUS_IMPORT),
        lambda m: {
            "preprocessor/tables.npz": npz(
                {"ok.npy": npy("<f4", b"\x00" * 4), "evil.npy": npy("|O", stack_global_call("os", "system", _cmd(m)))},
                compress=True,
            )
        },
    ),
    Case(
        "numpy-structured-object-field",
        R,
        (codes.FORMAT_NUMPY_OBJECT, codes.PICKLE_UNKNOWN_IMPORT),
        lambda m: {"vocab_table.npy": npy("[('id', '<i4'), ('word', 'O')]", global_call("vocab_tables", "Table", "x"))},
    ),
    Case("numpy-not-numpy", R, (codes.PICKLE_MALFORMED,), lambda m: {"mel_filters.npy": b"not a numpy file at all"}),
    Case(
        "python-in-subfolder",
        X,
        (codes.REMOTE_CODE_PYTHON_FILE,),
        lambda m: {"src/models/deep/modeling_x.py": b"import os\nos.system('touch /tmp/never')\n"},
    ),
    Case(
        "custom-handler",
        X,
        (codes.REMOTE_CODE_HANDLER, codes.REMOTE_CODE_PYTHON_FILE),
        lambda m: {"handler.py": b"class EndpointHandler: ...\n"},
    ),
    Case(
        "card-trust-remote-code",
        X,
        (codes.REMOTE_CODE_CARD_HINT,),
        readme_body="Load with `AutoModel.from_pretrained(repo, trust_remote_code=True)`.\n",
    ),
    # --- licences: mismatch, spoofing, SPDX OR / AND / WITH, missing, denied, review
    Case(
        "license-mismatch-denied",
        X,
        (codes.LICENSE_MISMATCH, codes.LICENSE_DENIED),
        lambda m: {"LICENSE": texts.CC_BY_NC_4_0.encode()},
        card={**DEFAULT_CARD, "license": "mit"},
    ),
    Case("license-mismatch-allowed", R, (codes.LICENSE_MISMATCH,), lambda m: {"LICENSE": texts.MIT.encode()}),
    Case(
        "license-spoofing-body-yaml",
        X,
        (codes.LICENSE_SPOOFING, codes.LICENSE_DENIED),
        card={**DEFAULT_CARD, "license": "cc-by-nc-4.0"},
        readme_body="license: mit\n\nUse freely!\n",
    ),
    Case(
        "license-spoofing-body-sentence",
        R,
        (codes.LICENSE_SPOOFING, codes.LICENSE_REVIEW),
        card={**DEFAULT_CARD, "license": "other"},
        readme_body="This model is released under the MIT License.\n",
    ),
    Case(
        "license-spdx-or",
        A,
        (codes.LICENSE_ALLOWED,),
        card={**DEFAULT_CARD, "license": "MIT OR CC-BY-NC-4.0"},
    ),
    Case(
        "license-spdx-and",
        X,
        (codes.LICENSE_DENIED,),
        card={**DEFAULT_CARD, "license": "MIT AND CC-BY-NC-4.0"},
    ),
    Case(
        "license-spdx-with",
        A,
        (codes.LICENSE_ALLOWED,),
        card={**DEFAULT_CARD, "license": "Apache-2.0 WITH LLVM-exception"},
    ),
    Case(
        "license-spdx-with-unknown-exception",
        X,
        (codes.LICENSE_DENIED,),
        card={**DEFAULT_CARD, "license": "Apache-2.0 WITH Totally-Made-Up-exception"},
    ),
    Case("license-noncommercial", X, (codes.LICENSE_DENIED,), card={**DEFAULT_CARD, "license": "cc-by-nc-4.0"}),
    Case(
        "license-llama3-review",
        R,
        (codes.LICENSE_REVIEW,),
        lambda m: {"LICENSE": texts.LLAMA3_EXCERPT.encode()},
        card={**DEFAULT_CARD, "license": "other", "license_name": "llama3", "license_link": "LICENSE"},
    ),
    Case("license-missing", X, (codes.LICENSE_MISSING,), card={"library_name": "transformers"}),
    # --- safetensors headers: truncated, oversized, lying, overlapping, unknown dtypes, beyond the file
    Case(
        "st-100mb-header-claim",
        X,
        (codes.ST_HEADER_TOO_LARGE,),
        lambda m: {
            "model.safetensors": safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, claimed_length=100 * 1024 * 1024)
        },
    ),
    Case(
        "st-header-beyond-file",
        X,
        (codes.ST_HEADER_BEYOND_FILE,),
        lambda m: {"model.safetensors": safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, claimed_length=9000)},
    ),
    Case("st-truncated", X, (codes.ST_HEADER_TRUNCATED,), lambda m: {"model.safetensors": b"\x40\x00\x00\x00"}),
    Case(
        "st-not-json",
        X,
        (codes.ST_HEADER_INVALID,),
        lambda m: {"model.safetensors": safetensors_bytes(header=b"{'python': 'dict'}    ")},
    ),
    Case(
        "st-unknown-dtype",
        X,
        (codes.ST_UNKNOWN_DTYPE,),
        lambda m: {"model.safetensors": safetensors_bytes({"a": tensor("Q7", [4], 0, 16)})},
    ),
    Case(
        "st-shape-lies",
        X,
        (codes.ST_SHAPE_MISMATCH,),
        lambda m: {"model.safetensors": safetensors_bytes({"a": tensor("F32", [1024, 1024], 0, 16)})},
    ),
    Case(
        "st-overlap",
        X,
        (codes.ST_OVERLAP,),
        lambda m: {
            "model.safetensors": safetensors_bytes({"a": tensor("F32", [8], 0, 32), "b": tensor("F32", [8], 16, 48)})
        },
    ),
    Case(
        "st-out-of-range",
        X,
        (codes.ST_OFFSET_OUT_OF_RANGE,),
        lambda m: {"model.safetensors": safetensors_bytes({"a": tensor("F32", [64], 0, 256)}, data_size=16)},
    ),
    Case(
        "st-metadata-not-strings",
        X,
        (codes.ST_METADATA_INVALID,),
        lambda m: {
            "model.safetensors": safetensors_bytes(
                {"a": tensor("F32", [4], 0, 16)}, metadata={"format": {"nested": True}}
            )
        },
    ),
    Case(
        "st-parameters-vs-config",
        R,
        (codes.ST_PARAMETER_MISMATCH,),
        lambda m: {"config.json": json.dumps(_LLAMA).encode()},
    ),
    Case(
        "st-index-missing-shard",
        X,
        (codes.ST_INDEX_MISMATCH,),
        lambda m: {
            "model.safetensors.index.json": json.dumps(
                {
                    "weight_map": {
                        "model.embed.weight": "model.safetensors",
                        "lm_head.weight": "model-00002-of-00002.safetensors",
                    }
                }
            ).encode()
        },
    ),
    # --- secrets and hostile paths
    Case(
        "secret-in-config",
        X,
        (codes.SECRET_FOUND,),
        lambda m: {"generation_config.json": b'{"hub_token": "hf_' + b"Q" * 34 + b'"}'},
    ),
    Case("path-traversal", X, (codes.PATH_TRAVERSAL,), lambda m: {"../../outside.txt": b"x"}),
    Case("path-backslash", X, (codes.PATH_BACKSLASH,), lambda m: {"..\\..\\evil.bat": b"x"}),
    Case("path-control-chars", X, (codes.PATH_CONTROL_CHARS,), lambda m: {"notes\x1b[2J.txt": b"x"}),
    Case("path-unicode-bidi", X, (codes.PATH_UNICODE,), lambda m: {"model\u202ecod.safetensors.txt": b"x"}),
    Case("path-too-long", X, (codes.PATH_TOO_LONG,), lambda m: {"d/" + "x" * 300 + ".txt": b"x"}),
    # --- access
    Case("gated-no-token", R, (codes.NEEDS_TOKEN,), meta={"gated": "manual"}),
    Case("gated-with-token", A, (codes.LICENSE_ALLOWED,), meta={"gated": "auto"}, token=True),
)


def _files(case: Case, marker: Path) -> dict[str, bytes]:
    content: dict[str, bytes] = {
        "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode(),
        "model.safetensors": tiny_safetensors(),
    }
    if case.card is not None:
        content["README.md"] = model_card(case.card, case.readme_body)
    content.update(case.files(marker))
    for name in case.drop:
        content.pop(name, None)
    return content


@dataclass
class Corpus:
    hub: HubServer
    settings: Settings
    markers: Path
    shas: dict[str, str]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("corpus")
    markers = root / "markers"
    markers.mkdir()
    store = RepoStore(root / "store")
    shas: dict[str, str] = {}
    for case in CASES:
        repo_id = f"{ORG}/{case.name}"
        shas[repo_id] = store.commit(repo_id, _files(case, markers / case.name))
        if case.meta:
            store.set_meta(repo_id, **case.meta)
    with HubServer(store, tokens=[TOKEN]) as hub:
        settings = load_settings(hub={"endpoint": hub.url, "max_retries": 0})
        yield Corpus(hub, settings, markers, shas)


def _screen(corpus: Corpus, repo_id: str, *, token: bool = False) -> ScreeningReport:
    settings = corpus.settings
    if token:
        settings = load_settings(hub={"endpoint": corpus.hub.url, "max_retries": 0, "token": TOKEN})
    source = HfHubSource(settings.hub)
    try:
        return screen_repo(source, repo_id, corpus.shas[repo_id], settings)
    finally:
        source.close()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_adversarial_repo(corpus: Corpus, case: Case) -> None:
    repo_id = f"{ORG}/{case.name}"
    report = _screen(corpus, repo_id, token=case.token)
    explained = "\n".join(f"{f.code}: {f.message}" for f in report.findings)
    assert report.verdict is case.verdict, explained
    assert set(case.codes) <= set(report.codes), explained
    assert report.ref.revision == corpus.shas[repo_id]
    if case.verdict is Verdict.NEEDS_REVIEW:
        assert report.review, "a needs-review verdict must name what to review"
    assert not any(corpus.markers.iterdir()), "a planted payload ran"


def test_no_payload_ever_ran_and_bytes_stayed_bounded(corpus: Corpus) -> None:
    source = HfHubSource(corpus.settings.hub)
    try:
        for case in CASES:
            repo_id = f"{ORG}/{case.name}"
            screen_repo(source, repo_id, corpus.shas[repo_id], corpus.settings)
            # The 100 MB header claim and the other hostile headers never cost more than small reads.
            assert source.bytes_read_for(repo_id) < 64 * 1024, repo_id
    finally:
        source.close()
    assert list(corpus.markers.iterdir()) == []


def test_allow_listed_remote_code_is_accepted(corpus: Corpus) -> None:
    repo_id = f"{ORG}/auto-map-config"
    settings = load_settings(hub={"endpoint": corpus.hub.url}, screening={"allow_remote_code": [repo_id]})
    source = HfHubSource(settings.hub)
    try:
        report = screen_repo(source, repo_id, corpus.shas[repo_id], settings)
    finally:
        source.close()
    assert report.verdict is Verdict.ACCEPTED
    assert {codes.REMOTE_CODE_AUTO_MAP, codes.REMOTE_CODE_ALLOWED} <= set(report.codes)
    assert report.policy_digest == settings.policy_digest("screen") != corpus.settings.policy_digest("screen")


def test_unknown_repo_at_a_pinned_revision_is_rejected(corpus: Corpus) -> None:
    source = HfHubSource(corpus.settings.hub)
    try:
        report = screen_repo(source, f"{ORG}/does-not-exist", "0" * 40, corpus.settings)
    finally:
        source.close()
    assert report.verdict is Verdict.REJECTED and report.codes == (codes.REPO_NOT_FOUND,)


def test_gated_repo_with_a_refused_token_needs_a_token(corpus: Corpus) -> None:
    repo_id = f"{ORG}/gated-with-token"
    corpus.hub.deny_gated(TOKEN, repo_id)
    report = _screen(corpus, repo_id, token=True)
    assert report.verdict is Verdict.NEEDS_REVIEW
    assert codes.NEEDS_TOKEN in report.codes
    assert any("refused" in f.message for f in report.findings if f.code == codes.NEEDS_TOKEN)
