"""A tiny vision-language chat model (LLaVA architecture, random weights) for fast tests.

LLaVA is served by `transformers serve` on CPU with no repository code and no torchvision: a CLIP vision tower
(2 layers, 32 x 32 images in 8 x 8 patches: 16 image tokens per image) projected into a 2-layer Llama (the
tiny chat models' shape) with a byte-level BPE tokenizer (vocabulary 1024) that has an `<image>` token. The
processor config (transformers 5 layout: the image processor nested in processor_config.json) and a ChatML
template that places `<image>` where the image part was complete the repo. A pure function of the code, like
`tiny.py`; it describes no image meaningfully.
"""

from __future__ import annotations

from typing import Any

from devstack.samples import tiny
from devstack.samples.cards import dump_json

SEED = tiny.SEED + 20
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>")
PAD, BOS, EOS, IMAGE = 0, 1, 2, 3  # positions in SPECIAL_TOKENS = their ids (trained first)
IMAGE_SIZE = 32
PATCH_SIZE = 8
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def llava_config() -> dict[str, Any]:
    text = tiny.llama_config(VOCAB_SIZE)
    text = {k: v for k, v in text.items() if k not in ("architectures", "torch_dtype")}
    text.update({"bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD})
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "image_seq_length": (IMAGE_SIZE // PATCH_SIZE) ** 2,
        "image_token_index": IMAGE,
        "model_type": "llava",
        "multimodal_projector_bias": True,
        "projector_hidden_act": "gelu",
        "text_config": text,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vision_config": {
            "hidden_act": "quick_gelu",
            "hidden_size": 32,
            "image_size": IMAGE_SIZE,
            "intermediate_size": 64,
            "layer_norm_eps": 1e-05,
            "model_type": "clip_vision_model",
            "num_attention_heads": 2,
            "num_channels": 3,
            "num_hidden_layers": 2,
            "patch_size": PATCH_SIZE,
            "projection_dim": 32,
        },
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "default",
    }


def processor_files(tokenizer_bytes: bytes) -> dict[str, bytes]:
    """processor_config.json (image processor nested), the chat template and the tokenizer."""
    image_processor = {
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(CLIP_MEAN),
        "image_processor_type": "CLIPImageProcessor",
        "image_std": list(CLIP_STD),
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": IMAGE_SIZE},
    }
    return {
        "processor_config.json": dump_json(
            {
                "image_processor": image_processor,
                "image_token": "<image>",
                "num_additional_image_tokens": 1,
                "patch_size": PATCH_SIZE,
                "processor_class": "LlavaProcessor",
                "vision_feature_select_strategy": "default",
            }
        ),
        "chat_template.jinja": CHAT_TEMPLATE.encode(),
        "tokenizer.json": tokenizer_bytes,
        "tokenizer_config.json": dump_json(
            {
                "bos_token": "<|im_start|>",
                "clean_up_tokenization_spaces": False,
                "eos_token": "<|im_end|>",
                "image_token": "<image>",
                "model_max_length": 2048,
                "pad_token": "<|endoftext|>",
                "processor_class": "LlavaProcessor",
                "tokenizer_class": "PreTrainedTokenizerFast",
            }
        ),
    }


def tiny_vlm_files() -> dict[str, bytes]:
    """config.json, generation_config.json, model.safetensors and the processor files."""
    from transformers import AutoModelForImageTextToText

    return tiny.generated_model_files(
        AutoModelForImageTextToText,
        llava_config(),
        seed=SEED,
        dtype="bfloat16",
        generation=dump_json({"bos_token_id": BOS, "do_sample": False, "eos_token_id": EOS, "pad_token_id": PAD}),
        processor=processor_files(tiny.train_tokenizer(SPECIAL_TOKENS, VOCAB_SIZE)),
    )
