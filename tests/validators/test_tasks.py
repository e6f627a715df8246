"""Task detection (validators/tasks.py): one rule per task from the repository's own metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack.samples import tiny_vlm, tiny_whisper
from validators.tasks import (
    CHAT,
    EMBEDDINGS,
    SPEECH_RECOGNITION,
    VISION_CHAT,
    TaskEvidence,
    UnsupportedTaskError,
    detect_task,
    evidence_from,
    read_evidence,
    task_from_config,
)

CONFIGS = Path(__file__).parent / "configs"


def _config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return data


def _arch(arch: str, model_type: str, **extra: Any) -> dict[str, Any]:
    return {"architectures": [arch], "model_type": model_type, **extra}


VISION = {"vision_config": {"hidden_size": 8}}
AUDIO = {"audio_config": {"d_model": 8}}
TEXT = {"text_config": {"hidden_size": 8}}

CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("llama", _arch("LlamaForCausalLM", "llama"), CHAT, True),
    ("gpt2", _arch("GPT2LMHeadModel", "gpt2"), CHAT, True),
    ("gemma3-text", _arch("Gemma3ForCausalLM", "gemma3_text"), CHAT, True),
    ("whisper-sample", tiny_whisper.whisper_config(), SPEECH_RECOGNITION, True),
    ("whisper-large-v3", _config("whisper-large-v3"), SPEECH_RECOGNITION, True),
    (
        "speech2text",
        _arch("Speech2TextForConditionalGeneration", "speech_to_text", is_encoder_decoder=True),
        SPEECH_RECOGNITION,
        True,
    ),
    ("wav2vec2-ctc", _arch("Wav2Vec2ForCTC", "wav2vec2"), SPEECH_RECOGNITION, False),
    ("llava-sample", tiny_vlm.llava_config(), VISION_CHAT, True),
    ("llava-1.5", _config("llava-1.5-7b"), VISION_CHAT, True),
    ("qwen2-vl", _arch("Qwen2VLForConditionalGeneration", "qwen2_vl", **VISION), VISION_CHAT, True),
    ("gemma3-vision", _arch("Gemma3ForConditionalGeneration", "gemma3", **VISION, **TEXT), VISION_CHAT, True),
    ("idefics3", _arch("Idefics3ForConditionalGeneration", "idefics3", **VISION, **TEXT), VISION_CHAT, True),
    ("gemma3n", _arch("Gemma3nForConditionalGeneration", "gemma3n", **VISION, **AUDIO), "any-to-any", False),
    ("qwen2-audio", _arch("Qwen2AudioForConditionalGeneration", "qwen2_audio", **AUDIO), "audio-text-to-text", False),
    ("t5", _arch("T5ForConditionalGeneration", "t5", is_encoder_decoder=True), "text2text-generation", False),
    ("bart", _arch("BartForConditionalGeneration", "bart"), "text2text-generation", False),
    ("minilm", _config("all-minilm-l6-v2"), EMBEDDINGS, True),
    ("bert-classifier", _arch("BertForSequenceClassification", "bert"), "text-classification", False),
    ("roberta-mlm", _arch("RobertaForMaskedLM", "roberta"), "fill-mask", False),
    ("vit", _arch("ViTForImageClassification", "vit"), "image-classification", False),
    ("nothing", {}, "unknown", False),
]


@pytest.mark.parametrize(("config", "task", "supported"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_rule_per_task(config: dict[str, Any], task: str, supported: bool) -> None:
    decision = task_from_config(config)
    assert (decision.task, decision.supported) == (task, supported), decision.reason
    assert decision.reason and decision.rule


@pytest.mark.parametrize("name", ["whisper-sample", "whisper-large-v3", "t5", "llava-sample", "gemma3n", "bart"])
def test_encoder_decoders_and_vision_models_are_never_chat(name: str) -> None:
    config = next(c[1] for c in CASES if c[0] == name)
    for tag in (None, "text-generation", "conversational"):
        assert detect_task(evidence_from(config, pipeline_tag=tag)).task != CHAT


def test_the_architecture_decides_and_a_disagreeing_card_is_noted() -> None:
    decision = detect_task(evidence_from(tiny_whisper.whisper_config(), pipeline_tag="text-generation"))
    assert decision.task == SPEECH_RECOGNITION and decision.supported
    assert "pipeline_tag 'text-generation' disagrees" in decision.message
    agreeing = detect_task(evidence_from(tiny_whisper.whisper_config(), pipeline_tag=SPEECH_RECOGNITION))
    assert agreeing.notes == ()


def test_unsupported_tasks_say_so_in_one_clear_line() -> None:
    decision = task_from_config(_arch("T5ForConditionalGeneration", "t5", is_encoder_decoder=True))
    with pytest.raises(UnsupportedTaskError, match=r"^unsupported task: text2text-generation \(") as raised:
        decision.require_supported()
    assert raised.value.decision is decision
    tagged = detect_task(TaskEvidence(architectures=("VitsModel",), model_type="vits", pipeline_tag="text-to-speech"))
    assert tagged.message.startswith("unsupported task: text-to-speech (no rule matches VitsModel")
    assert task_from_config(tiny_vlm.llava_config()).require_supported() == VISION_CHAT


def test_files_and_processor_configs_are_evidence() -> None:
    bert = _arch("XLMRobertaModel", "xlm-roberta")
    assert detect_task(evidence_from(bert, files={"modules.json"})).reason.startswith("sentence-transformers files")
    headless = _arch("NewModel", "new")
    assert detect_task(evidence_from(headless, pipeline_tag="feature-extraction")).task == EMBEDDINGS
    assert not detect_task(evidence_from(headless)).supported
    # A generative head with an image processor (no vision_config at the top level) is vision-language chat.
    processors = {"processor_config.json": {"image_processor": {"image_processor_type": "SiglipImageProcessor"}}}
    found = evidence_from(_arch("FancyForConditionalGeneration", "fancy"), processor_configs=processors)
    assert found.processor_classes == ("SiglipImageProcessor",)
    assert detect_task(found).task == VISION_CHAT


def test_read_evidence_reads_only_listed_processor_configs_and_ignores_hostile_bytes() -> None:
    asked: list[str] = []
    contents = {
        "processor_config.json": json.dumps({"processor_class": "LlavaProcessor"}).encode(),
        "preprocessor_config.json": b"\xff\xfe not json",
        "video_preprocessor_config.json": b"[1, 2, 3]",
        "feature_extractor_config.json": b"{" * 5_000_000,
    }

    def read(name: str) -> bytes | None:
        asked.append(name)
        return contents.get(name)

    files = [*contents, "model.safetensors", "../../etc/passwd"]
    found = read_evidence(tiny_vlm.llava_config(), files, read, "image-text-to-text")
    assert sorted(asked) == sorted(contents)  # processor configs only, never weights or odd names
    assert found.processor_classes == ("LlavaProcessor",)
    assert detect_task(found).task == VISION_CHAT
