"""A tiny Whisper-architecture speech-recognition model (2 + 2 layers, random weights) for fast tests.

A pure function of the code, like `tiny.py`: a byte-level BPE tokenizer (vocabulary 1024) with Whisper's
special tokens, trained on the tiny models' corpus; float32 weights from a fixed seed; configs from fixed dicts.
The feature extractor listens in 5 s windows (500 mel frames, so `max_source_positions` is 250) and generation
stops after 24 tokens: a transcription of any clip takes well under a second on one CPU core. It transcribes
nothing meaningful; it exists so the pipeline can discover, screen, stage, plan, serve and validate speech
recognition end to end.
"""

from __future__ import annotations

from typing import Any

from devstack.samples import tiny
from devstack.samples.cards import dump_json

SEED = tiny.SEED + 10
VOCAB_SIZE = 1024
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)
EOT, SOT, NO_TIMESTAMPS = 0, 1, 8  # positions in SPECIAL_TOKENS = their ids (trained first)
SAMPLING_RATE = 16_000
CHUNK_SECONDS = 5
HOP_LENGTH = 160
MEL_BINS = 80


def whisper_config() -> dict[str, Any]:
    return {
        "activation_function": "gelu",
        "architectures": ["WhisperForConditionalGeneration"],
        "bos_token_id": EOT,
        "d_model": 64,
        "decoder_attention_heads": 4,
        "decoder_ffn_dim": 128,
        "decoder_layers": 2,
        "decoder_start_token_id": SOT,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 128,
        "encoder_layers": 2,
        "eos_token_id": EOT,
        "is_encoder_decoder": True,
        "max_source_positions": CHUNK_SECONDS * SAMPLING_RATE // HOP_LENGTH // 2,
        "max_target_positions": 448,
        "model_type": "whisper",
        "num_mel_bins": MEL_BINS,
        "pad_token_id": EOT,
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }


def generation_config() -> bytes:
    return dump_json(
        {
            "begin_suppress_tokens": [],
            "bos_token_id": EOT,
            "decoder_start_token_id": SOT,
            "eos_token_id": EOT,
            "is_multilingual": False,
            "max_length": 24,
            "no_timestamps_token_id": NO_TIMESTAMPS,
            "pad_token_id": EOT,
            "return_timestamps": False,
            "suppress_tokens": [],
        }
    )


def processor_files(tokenizer_bytes: bytes) -> dict[str, bytes]:
    """The feature extractor (preprocessor_config.json) and the tokenizer: what `WhisperProcessor` loads."""
    return {
        "preprocessor_config.json": dump_json(
            {
                "chunk_length": CHUNK_SECONDS,
                "feature_extractor_type": "WhisperFeatureExtractor",
                "feature_size": MEL_BINS,
                "hop_length": HOP_LENGTH,
                "n_fft": 400,
                "padding_side": "right",
                "padding_value": 0.0,
                "processor_class": "WhisperProcessor",
                "return_attention_mask": False,
                "sampling_rate": SAMPLING_RATE,
            }
        ),
        "tokenizer.json": tokenizer_bytes,
        "tokenizer_config.json": dump_json(
            {
                "add_prefix_space": False,
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "errors": "replace",
                "model_max_length": 448,
                "pad_token": "<|endoftext|>",
                "processor_class": "WhisperProcessor",
                "tokenizer_class": "WhisperTokenizer",
                "unk_token": "<|endoftext|>",
            }
        ),
    }


def tiny_whisper_files() -> dict[str, bytes]:
    """config.json, generation_config.json, model.safetensors and the processor files."""
    from transformers import AutoModelForSpeechSeq2Seq

    return tiny.generated_model_files(
        AutoModelForSpeechSeq2Seq,
        whisper_config(),
        seed=SEED,
        dtype="float32",
        generation=generation_config(),
        processor=processor_files(tiny.train_tokenizer(SPECIAL_TOKENS, VOCAB_SIZE)),
    )
