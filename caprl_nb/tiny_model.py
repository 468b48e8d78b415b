"""Build a tiny, RANDOMLY INITIALISED Qwen2.5-VL checkpoint for tests and offline smoke runs.

    python tiny_model.py DEST

WARNING: the model this writes has never been trained. Its "captions" are noise. It exists so
that the test suite and offline smoke runs can drive a real vLLM server through the real
Qwen2.5-VL code path (tokenizer, chat template, image processor, vision tower, mrope) in
seconds, on a CPU, without downloading anything. Never use it to caption real data.

What it is: a byte-level BPE tokenizer trained on a fixed sentence list, with the Qwen2-VL
special tokens and chat template; ``Qwen2VLImageProcessor`` capped at 64 image tokens;
a 2-layer text model (hidden 128, 4 heads of 32, mrope_section [4, 6, 6]) and a 2-block
vision tower (hidden 64). Weights are re-drawn with std 0.3 so that the output visibly
depends on the image; the special tokens' embedding rows are shrunk so that answers are not
empty. Seeded, so every build is the same model (about 1.3 MB).

Runs with the engine's interpreter (torch, transformers, tokenizers); every heavy import is
inside :func:`main`, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

SEED = 20250901
MARKER = "caprl_tiny_model.json"  # written last: its presence means the build finished
MAX_PIXELS = 28 * 28 * 64  # at most 64 image tokens per image
MIN_PIXELS = 28 * 28 * 4

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The chat template of Qwen/Qwen2-VL-7B-Instruct (also used by Qwen2.5-VL and CapRL-3B).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "Please describe this image in detail.",
    "The image shows a chart with a title, two axes, a legend and several coloured bars.",
    "A photograph of a street at night: cars, people, shop windows and bright signs.",
    "The table has three columns: year, revenue and profit. Values rise every year.",
    "You are a helpful assistant. Answer the question about the picture.",
    "A document page with a header, a paragraph of text, a signature and a date.",
    "Red, green, blue, yellow, black, white, grey, orange, purple and brown.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 2025 % $ . , ; : ! ? ( ) [ ] { } \" ' - + = / *",
]


def _tokenizer(vocab_size: int) -> Any:  # a PreTrainedTokenizerFast (transformers lives in the engine's venv)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)  # ids right after the BPE vocabulary, in Qwen's order
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    dest = Path(args[0]).expanduser().resolve()
    if (dest / MARKER).is_file():
        print(f"{dest} already holds the tiny model")
        return 0

    import torch
    import transformers
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(SEED)
    tokenizer = _tokenizer(vocab_size=600)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = 64 * ((len(tokenizer) + 63) // 64)  # padded, as real checkpoints are

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,  # head_dim 32: vLLM's CPU attention supports 32/64/80/...
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 128,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                continue  # keep RMSNorm/LayerNorm scales at 1
            # std 0.3, not the usual 0.02, so image features move the logits visibly
            param.copy_(torch.randn_like(param) * (0.3 if param.dim() > 1 else 0.05))
        # The (tied) embedding: ordinary rows doubled, special and padding rows near zero, so the
        # special tokens' logits sit far under the ordinary ones' and an answer practically never
        # starts with a stop token (an empty caption is a row error) or a token that decodes to
        # nothing. Answers still end at max_tokens, at a rare stop token, or by a grammar.
        embedding = model.get_input_embeddings().weight
        special = min(ids.values())
        embedding[:special] *= 2.0
        embedding[special:] *= 0.05
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=CHAT_TEMPLATE,
    )

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
    try:
        model.to(torch.bfloat16).save_pretrained(staging)
        processor.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "warning": "randomly initialised; outputs are noise; for tests only",
                    "seed": SEED,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "parameters": sum(p.numel() for p in model.parameters()),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    print(f"wrote a randomly initialised tiny Qwen2.5-VL (captions are noise) to {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
