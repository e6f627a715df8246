"""The files a model's processor needs beside its weights: what staging copies, what task detection reads and
what screening checks for `auto_map` (a fact about the Hugging Face repository layout, so it lives here, below
scanners and validators).

A processor is everything between a request and the model's tensors: the tokenizer (vocabulary, merges,
sentencepiece model, normaliser), the chat template, and for other modalities the feature extractor (audio:
`preprocessor_config.json`), the image and video processors, and the `processor_config.json` that ties them
together (transformers 5 nests the image / video processor settings inside it). Names are matched exactly
(at the repository root) except `additional_chat_templates/*.jinja`.
"""

from __future__ import annotations

# Processor configs: which classes prepare inputs. Task detection reads these (bounded, parsed as JSON data).
PROCESSOR_CONFIG_FILES = frozenset(
    {
        "processor_config.json",
        "preprocessor_config.json",
        "feature_extractor_config.json",
        "image_processor_config.json",
        "video_preprocessor_config.json",
        "video_processor_config.json",
        "audio_tokenizer_config.json",
    }
)
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "vocab.txt",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "normalizer.json",
        "chat_template.jinja",
        "chat_template.json",
    }
)
ADDITIONAL_TEMPLATES_DIR = "additional_chat_templates/"


def is_processor_file(name: str) -> bool:
    """Whether staging must carry `name` for the model's processor to load."""
    if name in PROCESSOR_CONFIG_FILES or name in TOKENIZER_FILES:
        return True
    return name.startswith(ADDITIONAL_TEMPLATES_DIR) and name.count("/") == 1 and name.endswith(".jinja")
