"""Tiny generated chat models (2 layers, random weights, byte-level BPE) for fast tests.

Everything here is a pure function of the code: the tokenizer is trained on text kept in this package
(licence texts + generated sentences, in a fixed order), the weights come from a fixed torch seed and are
written with `safetensors` directly, and config files are rendered from fixed dicts with sorted keys.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
import zlib
from typing import Any

from devstack.samples import licenses
from devstack.samples.cards import CHATML_TEMPLATE, dump_json

VOCAB_SIZE = 4096
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SEED = 20260105

_SUBJECTS = (
    "The model",
    "A curator",
    "The pipeline",
    "Every runtime",
    "The catalog",
    "A maintainer",
    "The server",
)
_VERBS = ("screens", "stages", "validates", "publishes", "signs", "benchmarks", "downloads", "reviews")
_OBJECTS = (
    "the weights",
    "a licence",
    "each revision",
    "the safetensors header",
    "an image digest",
    "the chat template",
    "every region",
    "a deployment template",
    "the tokenizer",
    "trending repositories",
)
_SYLLABLES = tuple(c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou"))
_FACTS = (
    "The capital of France is Paris.",
    "The capital of Germany is Berlin.",
    "The capital of Italy is Rome.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Two plus two equals four.",
    "Hello! How can I help you today?",
    "What is the capital of France?",
    "Thank you, that was helpful.",
)


def training_corpus() -> list[str]:
    """The tokenizer's training text, always in the same order."""
    texts = [licenses.APACHE_2_0, licenses.MIT, licenses.CC_BY_NC_4_0, licenses.LLAMA3_EXCERPT]
    sentences = [f"{s} {v} {o}." for s in _SUBJECTS for v in _VERBS for o in _OBJECTS]
    texts.extend(sentences)
    for index, fact in enumerate(_FACTS):
        answer = _FACTS[-1 - index]
        texts.append(f"<|im_start|>user\n{fact}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>")
    texts.extend(f"{n} {n * 7} {n * n} 0x{n:04x}" for n in range(512))
    # Pseudo-words from a seeded generator give the trainer enough distinct pairs to fill the vocabulary.
    rng = random.Random(SEED)  # noqa: S311 (reproducible text, not security)
    for _ in range(400):
        words = ("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(24))
        texts.append(" ".join(words) + ".")
    return texts


def tokenizer_json() -> bytes:
    """Train the byte-level BPE tokenizer and return its tokenizer.json bytes."""
    return train_tokenizer(SPECIAL_TOKENS, VOCAB_SIZE)


def train_tokenizer(special_tokens: tuple[str, ...], vocab_size: int) -> bytes:
    """A byte-level BPE tokenizer trained on `training_corpus()`, as canonical tokenizer.json bytes."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer=trainer)
    # Canonical JSON: the same bytes whatever order the library serialises maps in.
    data = json.loads(tokenizer.to_str())
    return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def tokenizer_files(tokenizer_bytes: bytes) -> dict[str, bytes]:
    return {
        "tokenizer.json": tokenizer_bytes,
        "tokenizer_config.json": dump_json(
            {
                "add_bos_token": False,
                "add_prefix_space": False,
                "bos_token": "<|im_start|>",
                "chat_template": CHATML_TEMPLATE,
                "clean_up_tokenization_spaces": False,
                "eos_token": "<|im_end|>",
                "model_max_length": 2048,
                "pad_token": "<|endoftext|>",
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": None,
            }
        ),
        "special_tokens_map.json": dump_json(
            {
                "bos_token": "<|im_start|>",
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
            }
        ),
    }


def llama_config(vocab_size: int) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 2048,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def qwen2_config(vocab_size: int) -> dict[str, Any]:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 2048,
        "max_window_layers": 2,
        "model_type": "qwen2",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }


def generation_config() -> bytes:
    return dump_json({"bos_token_id": 1, "do_sample": False, "eos_token_id": 2, "pad_token_id": 0})


def random_weights(config: dict[str, Any], seed: int = SEED) -> dict[str, Any]:
    """A bf16 state dict for `config`, initialised from a fixed seed (CPU, deterministic)."""
    from transformers import AutoModelForCausalLM

    return seeded_state_dict(AutoModelForCausalLM, config, seed, "bfloat16")


def seeded_state_dict(auto_class: Any, config: dict[str, Any], seed: int, dtype: str) -> dict[str, Any]:
    """The state dict of `auto_class.from_config(config)` initialised from `seed` (CPU, one thread), in `dtype`.

    Tied tensors (an output projection sharing the input embedding) are stored once, as `save_pretrained` does.
    """
    import torch
    from transformers import AutoConfig

    hf_config = AutoConfig.for_model(**{k: v for k, v in config.items() if k != "torch_dtype"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = auto_class.from_config(hf_config, dtype=torch.float32)
        seen: set[int] = set()
        weights: dict[str, Any] = {}
        for name, tensor in sorted(model.state_dict().items()):
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            cast = tensor.to(getattr(torch, dtype)) if tensor.is_floating_point() else tensor
            weights[name] = cast.detach().contiguous().clone()
        return weights
    finally:
        torch.set_num_threads(threads)


def generated_model_files(
    auto_class: Any, config: dict[str, Any], *, seed: int, dtype: str, generation: bytes, processor: dict[str, bytes]
) -> dict[str, bytes]:
    """config.json, generation_config.json and model.safetensors of a seeded model, plus its processor files."""
    weights = seeded_state_dict(auto_class, config, seed, dtype)
    files = {
        "config.json": dump_json(config),
        "generation_config.json": generation,
        "model.safetensors": safetensors_bytes(weights),
    }
    return {**files, **processor}


def safetensors_bytes(state_dict: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    data: bytes = save(state_dict, metadata={"format": "pt"})
    return data


def pickle_bytes(state_dict: dict[str, Any]) -> bytes:
    """A real torch zip-pickle (`torch.save`) of plain tensors, with its random serialization id pinned."""
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.to(torch.float32) for k, v in sorted(state_dict.items())}, buffer)
    return pin_serialization_id(buffer.getvalue())


def pin_serialization_id(data: bytes) -> bytes:
    """Replace the random `.data/serialization_id` record of a torch zip with a fixed one (same length).

    The stored (uncompressed) bytes are overwritten in place and the entry's CRC-32 is fixed in the local
    header, the data descriptor and the central directory, so the zip stays valid and offsets stay aligned.
    """
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(".data/serialization_id"))
        central_start = archive.start_dir
    if info.compress_type != zipfile.ZIP_STORED:
        return data
    fixed = (b"0" * info.file_size)[: info.file_size]
    crc = zlib.crc32(fixed)
    local = info.header_offset
    name_len, extra_len = struct.unpack_from("<HH", buf, local + 26)
    start = local + 30 + name_len + extra_len
    buf[start : start + info.file_size] = fixed
    if struct.unpack_from("<I", buf, local + 14)[0]:
        struct.pack_into("<I", buf, local + 14, crc)
    if info.flag_bits & 0x08:
        end = start + info.file_size
        struct.pack_into("<I", buf, end + 4 if buf[end : end + 4] == b"PK\x07\x08" else end, crc)
    offset = central_start
    while buf[offset : offset + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", buf, offset + 28)
        if bytes(buf[offset + 46 : offset + 46 + n]) == info.filename.encode():
            struct.pack_into("<I", buf, offset + 16, crc)
            break
        offset += 46 + n + m + k
    return bytes(buf)


def tiny_model_files(arch: str, tok: bytes | None = None) -> dict[str, bytes]:
    """config.json, generation_config.json, model.safetensors and tokenizer files for 'llama' or 'qwen2'."""
    tok = tok if tok is not None else tokenizer_json()
    config = llama_config(VOCAB_SIZE) if arch == "llama" else qwen2_config(VOCAB_SIZE)
    weights = random_weights(config, SEED + (0 if arch == "llama" else 1))
    files = {
        "config.json": dump_json(config),
        "generation_config.json": generation_config(),
        "model.safetensors": safetensors_bytes(weights),
    }
    files.update(tokenizer_files(tok))
    return files
