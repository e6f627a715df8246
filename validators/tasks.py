"""Which task a model repository serves, from its own metadata: one rule per task, first match decides.

Evidence (`TaskEvidence`, all parsed as JSON data, never imported): config.json's `architectures`,
`model_type`, `is_encoder_decoder` and sub-configs (`text_config`, `vision_config`, `audio_config`), the
classes its processor configs name (`processor_class`, `feature_extractor_type`, `image_processor_type`,
`video_processor_type`), the repository's file names (sentence-transformers files, processor configs) and the
card's `pipeline_tag`. The architecture decides; the card's tag only breaks ties for headless encoders and is
reported when it disagrees, so a Whisper tagged `text-generation` is still speech recognition.

Rules, in order (docs/status.md lists what each task runs on):

| rule | task | supported |
| --- | --- | --- |
| audio and vision sub-configs together | `any-to-any` | no |
| speech encoder-decoder (Whisper, Speech2Text, Moonshine) | `automatic-speech-recognition` | yes |
| CTC speech heads (`*ForCTC`) | `automatic-speech-recognition` | no: served by `generate` only |
| an audio sub-config beside a language model | `audio-text-to-text` | no |
| a vision sub-config (or an image processor) with a generative head | `image-text-to-text` | yes |
| text encoder-decoders (T5, BART, Marian ...) | `text2text-generation` | no |
| causal LM heads (`*ForCausalLM`, `*LMHeadModel`) | `chat` | yes |
| sentence-transformers files, or a headless text encoder | `embeddings` | yes |
| any other head (`*ForSequenceClassification` ...) or only a card tag | that task | no |

A supported task may still have no runtime in the policy: the planner says so (`unsupported task: ...`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.hub import HubSource, RepoInfo
from registry.processor_files import PROCESSOR_CONFIG_FILES
from registry.schema import ModelRef
from validators.errors import ValidatorError

CHAT = "chat"
EMBEDDINGS = "embeddings"
SPEECH_RECOGNITION = "automatic-speech-recognition"
VISION_CHAT = "image-text-to-text"
SUPPORTED_TASKS = (CHAT, EMBEDDINGS, SPEECH_RECOGNITION, VISION_CHAT)

MAX_CONFIG_BYTES = 2 * 1024 * 1024
SENTENCE_TRANSFORMERS_FILES = frozenset(
    {"modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"}
)
_PROCESSOR_CLASS_KEYS = ("processor_class", "feature_extractor_type", "image_processor_type", "video_processor_type")

SPEECH_SEQ2SEQ_TYPES = frozenset({"whisper", "speech_to_text", "speech-encoder-decoder", "moonshine"})
TEXT2TEXT_TYPES = frozenset(
    {"t5", "mt5", "umt5", "longt5", "bart", "mbart", "pegasus", "pegasus_x", "marian", "m2m_100", "nllb-moe", "led",
     "prophetnet", "fsmt", "plbart", "blenderbot", "blenderbot-small", "switch_transformers", "bigbird_pegasus"}
)  # fmt: skip
EMBEDDING_TYPES = frozenset({"bert", "xlm-roberta", "roberta", "mpnet", "nomic_bert", "modernbert", "distilbert"})
_EMBEDDING_ARCH_HINTS = ("BertModel", "XLMRobertaModel", "RobertaModel", "MPNetModel", "NomicBertModel", "Embedding")
_GENERATIVE_HEADS = ("ForConditionalGeneration", "ForImageTextToText", "ForCausalLM", "ForVision2Seq")
_CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel")
# Heads the pipeline does not serve, and the task each one is (for the "unsupported task" row).
_OTHER_HEADS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForMultipleChoice", "multiple-choice"),
    ("ForImageClassification", "image-classification"),
    ("ForObjectDetection", "object-detection"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForUniversalSegmentation", "image-segmentation"),
    ("ForDepthEstimation", "depth-estimation"),
    ("ForAudioClassification", "audio-classification"),
    ("ForTextToSpeech", "text-to-speech"),
    ("ForTextToWaveform", "text-to-speech"),
    ("ForTextToSpectrogram", "text-to-speech"),
)
_EMBEDDING_TAGS = frozenset({"feature-extraction", "sentence-similarity"})


class UnsupportedTaskError(ValidatorError):
    """The model's task is one the pipeline cannot serve (yet); the message starts `unsupported task: <task>`."""

    def __init__(self, decision: TaskDecision) -> None:
        super().__init__(decision.message)
        self.decision = decision


@dataclass(frozen=True)
class TaskEvidence:
    """What task detection reads (see the module docstring); every field is plain data."""

    architectures: tuple[str, ...] = ()
    model_type: str = ""
    is_encoder_decoder: bool = False
    sub_configs: frozenset[str] = frozenset()
    processor_classes: tuple[str, ...] = ()
    files: frozenset[str] = frozenset()
    pipeline_tag: str | None = None


@dataclass(frozen=True)
class TaskDecision:
    """The task a model serves, whether the pipeline supports it, and why (the rule and its evidence)."""

    task: str
    supported: bool
    rule: str
    reason: str
    notes: tuple[str, ...] = field(default=())

    @property
    def message(self) -> str:
        head = f"{self.task}" if self.supported else f"unsupported task: {self.task}"
        return "; ".join((f"{head} ({self.reason})", *self.notes))

    def require_supported(self) -> str:
        """The task name, or `UnsupportedTaskError` with the clear "unsupported task: <task>" message."""
        if not self.supported:
            raise UnsupportedTaskError(self)
        return self.task


# ---------------------------------------------------------------------------------------------- evidence


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v)[:200] for v in value) if isinstance(value, list) else ()


def evidence_from(
    config: Mapping[str, Any],
    *,
    files: Iterable[str] = (),
    processor_configs: Mapping[str, Mapping[str, Any]] | None = None,
    pipeline_tag: str | None = None,
) -> TaskEvidence:
    """Evidence from a parsed config.json, the repository's file names and its parsed processor configs."""
    classes: list[str] = []
    for parsed in (processor_configs or {}).values():
        for scope in (parsed, *(v for v in parsed.values() if isinstance(v, Mapping))):
            classes += [str(scope[k])[:200] for k in _PROCESSOR_CLASS_KEYS if isinstance(scope.get(k), str)]
    sub = frozenset(k for k in ("text_config", "vision_config", "audio_config") if isinstance(config.get(k), Mapping))
    return TaskEvidence(
        architectures=_names(config.get("architectures")),
        model_type=str(config.get("model_type") or "").lower(),
        is_encoder_decoder=config.get("is_encoder_decoder") is True,
        sub_configs=sub,
        processor_classes=tuple(dict.fromkeys(classes)),
        files=frozenset(files),
        pipeline_tag=pipeline_tag,
    )


def parse_json_object(data: bytes | None) -> dict[str, Any] | None:
    """A JSON object from bounded bytes, or None (never raises on hostile bytes)."""
    if data is None or len(data) > MAX_CONFIG_BYTES:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_evidence(
    config: Mapping[str, Any], files: Iterable[str], read: Callable[[str], bytes | None], pipeline_tag: str | None
) -> TaskEvidence:
    """Evidence where the processor configs are read on demand (`read(name)`: the file's bytes or None)."""
    names = frozenset(files)
    processors: dict[str, dict[str, Any]] = {}
    for name in sorted(names & PROCESSOR_CONFIG_FILES):
        parsed = parse_json_object(read(name))
        if parsed is not None:
            processors[name] = parsed
    return evidence_from(config, files=names, processor_configs=processors, pipeline_tag=pipeline_tag)


def hub_evidence(source: HubSource, info: RepoInfo) -> TaskEvidence:
    """Evidence of one pinned revision on the Hub: config.json and the processor configs (small, bounded)."""
    ref = ModelRef(repo_id=info.repo_id, revision=info.sha or "")
    names = {f.path for f in info.files}

    def read(name: str) -> bytes | None:
        return source.read_file(ref, name, max_bytes=MAX_CONFIG_BYTES) if name in names else None

    config = parse_json_object(read("config.json")) or dict(info.config or {})
    return read_evidence(config, names, read, info.pipeline_tag)


# ---------------------------------------------------------------------------------------------- rules


Rule = Callable[[TaskEvidence], TaskDecision | None]


def _heads(evidence: TaskEvidence, *suffixes: str) -> list[str]:
    return [a for a in evidence.architectures if a.endswith(suffixes)]


def _shown(evidence: TaskEvidence) -> str:
    return ", ".join(evidence.architectures) or f"model_type {evidence.model_type or 'unknown'}"


def any_to_any(evidence: TaskEvidence) -> TaskDecision | None:
    if {"audio_config", "vision_config"} <= evidence.sub_configs:
        return TaskDecision("any-to-any", False, "any_to_any", f"{_shown(evidence)} takes audio and images")
    return None


def speech_recognition(evidence: TaskEvidence) -> TaskDecision | None:
    ctc = _heads(evidence, "ForCTC")
    if ctc:
        why = f"{', '.join(ctc)} is a CTC head; hf-serve transcribes with encoder-decoder `generate` only"
        return TaskDecision(SPEECH_RECOGNITION, False, "speech_recognition", why)
    seq2seq = _heads(evidence, "ForSpeechSeq2Seq")
    if seq2seq or (evidence.model_type in SPEECH_SEQ2SEQ_TYPES and _heads(evidence, *_GENERATIVE_HEADS)):
        why = f"{_shown(evidence)} is a speech encoder-decoder"
        return TaskDecision(SPEECH_RECOGNITION, True, "speech_recognition", why)
    return None


def audio_text(evidence: TaskEvidence) -> TaskDecision | None:
    if "audio_config" in evidence.sub_configs:
        return TaskDecision("audio-text-to-text", False, "audio_text", f"{_shown(evidence)} has an audio encoder")
    return None


def vision_chat(evidence: TaskEvidence) -> TaskDecision | None:
    heads = _heads(evidence, *_GENERATIVE_HEADS)
    has_vision = "vision_config" in evidence.sub_configs
    image_processor = any("ImageProcessor" in c for c in evidence.processor_classes)
    if heads and (has_vision or (image_processor and not _heads(evidence, *_CAUSAL_HEADS))):
        what = "a vision encoder" if has_vision else "an image processor"
        return TaskDecision(VISION_CHAT, True, "vision_chat", f"{', '.join(heads)} with {what}")
    return None


def text_to_text(evidence: TaskEvidence) -> TaskDecision | None:
    if evidence.model_type in TEXT2TEXT_TYPES or evidence.is_encoder_decoder:
        why = f"{_shown(evidence)} is a text encoder-decoder, not a chat model"
        return TaskDecision("text2text-generation", False, "text_to_text", why)
    return None


def chat(evidence: TaskEvidence) -> TaskDecision | None:
    heads = _heads(evidence, *_CAUSAL_HEADS)
    if heads:
        return TaskDecision(CHAT, True, "chat", f"{', '.join(heads)} is a causal language model")
    return None


def embeddings(evidence: TaskEvidence) -> TaskDecision | None:
    st_files = sorted(evidence.files & SENTENCE_TRANSFORMERS_FILES)
    if st_files:
        return TaskDecision(EMBEDDINGS, True, "embeddings", f"sentence-transformers files ({', '.join(st_files)})")
    headless = any(hint in a for a in evidence.architectures for hint in _EMBEDDING_ARCH_HINTS)
    if headless or (evidence.model_type in EMBEDDING_TYPES and not evidence.architectures):
        return TaskDecision(EMBEDDINGS, True, "embeddings", f"{_shown(evidence)} is a text encoder")
    if evidence.pipeline_tag in _EMBEDDING_TAGS and _heads(evidence, "Model"):
        why = f"{_shown(evidence)} has no head and the card says {evidence.pipeline_tag}"
        return TaskDecision(EMBEDDINGS, True, "embeddings", why)
    return None


def other(evidence: TaskEvidence) -> TaskDecision:
    for suffix, task in _OTHER_HEADS:
        heads = _heads(evidence, suffix)
        if heads:
            return TaskDecision(task, False, "other", f"{', '.join(heads)} is a {task} head")
    if evidence.pipeline_tag:
        why = f"no rule matches {_shown(evidence)}; the card says {evidence.pipeline_tag}"
        return TaskDecision(evidence.pipeline_tag, False, "other", why)
    return TaskDecision("unknown", False, "other", f"no rule matches {_shown(evidence)} and the card names no task")


RULES: tuple[Rule, ...] = (any_to_any, speech_recognition, audio_text, vision_chat, text_to_text, chat, embeddings)


def detect_task(evidence: TaskEvidence) -> TaskDecision:
    """The first rule that matches (`other` when none does), with a note when the card's tag disagrees."""
    decision = next((d for rule in RULES if (d := rule(evidence)) is not None), None) or other(evidence)
    tag = evidence.pipeline_tag
    if tag and decision.supported and tag not in _tags_of(decision.task):
        note = f"the card's pipeline_tag {tag!r} disagrees; the architecture decides"
        decision = TaskDecision(decision.task, True, decision.rule, decision.reason, (*decision.notes, note))
    return decision


def _tags_of(task: str) -> frozenset[str]:
    """The card pipeline tags that agree with a supported task."""
    return {
        CHAT: frozenset({"text-generation", "conversational"}),
        EMBEDDINGS: _EMBEDDING_TAGS,
        SPEECH_RECOGNITION: frozenset({SPEECH_RECOGNITION}),
        VISION_CHAT: frozenset({VISION_CHAT, "image-to-text", "visual-question-answering"}),
    }.get(task, frozenset({task}))


def task_from_config(config: Mapping[str, Any]) -> TaskDecision:
    """The decision from config.json alone (the planner's view when no repository is at hand)."""
    return detect_task(evidence_from(config))
