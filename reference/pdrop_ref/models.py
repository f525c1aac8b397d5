"""Tiny, seeded models of the architectures pdrop is checked against.

Each is a transformers model class built from a config written here (no
weights are downloaded): the real structure (vision tower, projector, anyres
grid and newline embedding, M-RoPE sections, GQA, q/k/v biases) at widths of
32-64 and 4 decoder layers, with its own processor (image processor, a small
word-level tokenizer made in code, and a chat template in the model family's
format).

ARCHS names them:
  llama       LlamaForCausalLM, text only (a span of the prompt stands in for
              the image tokens)
  llava       LlavaForConditionalGeneration, LLaVA-1.5: CLIP 336 px / patch
              14, 576 image tokens, 2-layer GELU projector
  llava_next  LlavaNextForConditionalGeneration: anyres tiles + base image,
              unpadding and one newline token per row of features
  qwen2_vl    Qwen2VLForConditionalGeneration: 3-row M-RoPE, GQA, q/k/v
              biases, 2x2 patch merge, images and video
  qwen2_5_vl  Qwen2_5_VLForConditionalGeneration: window attention in the
              vision tower, time-scaled temporal positions for video
  qwen3_vl    Qwen3VLForConditionalGeneration: interleaved M-RoPE sections,
              q/k RMSNorm per head, DeepStack (vision-tower levels added to
              the image tokens after the first decoder layers), timestamped
              video frames
"""
from __future__ import annotations

import math

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

ARCHS = ("llama", "llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl")

# Words the prompts use; anything else maps to the unknown token.
WORDS = """a an the of in on at to and or is are was what which who where how many
describe image images picture photo video frame frames detail details color colors
object objects left right top bottom center background foreground person people
cat cup coffee rocket astronaut space launch table wood sky smoke text first second
compare difference between both show shows shown there this that it its with from
count list main scene kind sort short long answer question one two three four please
briefly tell me about happens happening see seen""".split()
PUNCT = list(".,?!:;'\"()-")

# Chat templates in each family's format (written for these tiny models; the
# released checkpoints ship their own, of the same shape).
LLAVA_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% else %} ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<image>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def make_tokenizer(specials: list[str], template: str, cls=PreTrainedTokenizerFast):
    """A word-level tokenizer: the special tokens first, then WORDS and PUNCT."""
    vocab = {t: i for i, t in enumerate(specials + WORDS + PUNCT + ["\n", "USER", "ASSISTANT",
                                                                     "user", "assistant",
                                                                     "system"])}
    unk = specials[0]
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    # A newline is a token of its own (as in the released vocabularies), so
    # that two images on consecutive lines stay two spans.
    tok.add_tokens([AddedToken("\n", normalized=False, special=False)])
    fast = cls(tokenizer_object=tok, unk_token=unk, pad_token=specials[0])
    fast.add_special_tokens({"additional_special_tokens": specials[1:]})
    fast.chat_template = template
    return fast


def _reinit(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights at a scale where attention is far from uniform: every
    Linear N(0, 1/in), biases N(0, 0.1^2), norm weights 1 + N(0, 0.1^2),
    embeddings N(0, 1). transformers' own init (std 0.02) makes tiny models'
    attention nearly flat, so their scores would tie."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim >= 2 and "embed" not in name and "patch_embed" not in name:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif p.ndim >= 2:  # token / patch / position embeddings
                p.copy_(torch.randn(p.shape, generator=g) * (0.05 if "patch" in name or "position" in name else 1.0))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:  # norm weights, the LLaVA-NeXT newline, class embedding
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)


def _clip_vision():
    from transformers import CLIPVisionConfig
    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, image_size=336, patch_size=14,
                            projection_dim=32)


def _llama_text(vocab: int, **kw):
    from transformers import LlamaConfig
    args = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=8192,
                rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    args.update(kw)
    return LlamaConfig(**args)


PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def build(arch: str, seed: int = 0):
    """(model, processor) for `arch`, weights seeded by `seed`, float32, eval
    mode, eager attention. processor is None for llama (text only)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}' (expected one of {', '.join(ARCHS)})")
    torch.manual_seed(seed)
    if arch == "llama":
        from transformers import LlamaForCausalLM
        tok = make_tokenizer(LLAVA_SPECIALS, LLAVA_TEMPLATE)
        cfg = _llama_text(len(tok), num_key_value_heads=2)
        cfg._attn_implementation = "eager"
        model = LlamaForCausalLM(cfg)
        processor = tok
    elif arch in ("llava", "llava_next"):
        tok = make_tokenizer(LLAVA_SPECIALS, LLAVA_TEMPLATE)
        image_id = tok.convert_tokens_to_ids("<image>")
        if arch == "llava":
            from transformers import (CLIPImageProcessor, LlavaConfig,
                                      LlavaForConditionalGeneration, LlavaProcessor)
            cfg = LlavaConfig(vision_config=_clip_vision(), text_config=_llama_text(len(tok)),
                              image_token_index=image_id, vision_feature_layer=-2,
                              vision_feature_select_strategy="default",
                              projector_hidden_act="gelu")
            cfg._attn_implementation = "eager"
            model = LlavaForConditionalGeneration(cfg)
            ip = CLIPImageProcessor(size={"shortest_edge": 336},
                                    crop_size={"height": 336, "width": 336})
            processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14,
                                       vision_feature_select_strategy="default",
                                       num_additional_image_tokens=1,
                                       chat_template=LLAVA_TEMPLATE)
        else:
            from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration,
                                      LlavaNextImageProcessor, LlavaNextProcessor)
            cfg = LlavaNextConfig(vision_config=_clip_vision(),
                                  text_config=_llama_text(len(tok), num_key_value_heads=2),
                                  image_token_index=image_id, vision_feature_layer=-2,
                                  vision_feature_select_strategy="default",
                                  image_grid_pinpoints=PINPOINTS)
            cfg._attn_implementation = "eager"
            model = LlavaNextForConditionalGeneration(cfg)
            ip = LlavaNextImageProcessor(size={"shortest_edge": 336},
                                         crop_size={"height": 336, "width": 336},
                                         image_grid_pinpoints=PINPOINTS)
            processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=14,
                                           vision_feature_select_strategy="default",
                                           num_additional_image_tokens=1,
                                           chat_template=LLAVA_TEMPLATE)
    else:
        from transformers import Qwen2TokenizerFast
        tok = make_tokenizer(QWEN_SPECIALS, QWEN_TEMPLATE, Qwen2TokenizerFast)
        ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
        text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=1000000.0,
                    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
                    tie_word_embeddings=False)
        special = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                       vision_start_token_id=ids["<|vision_start|>"],
                       vision_end_token_id=ids["<|vision_end|>"])
        # Pixel limits: each image at most 256 merged tokens (the released
        # processors allow far more; the token layout rules are the same).
        pix = dict(min_pixels=56 * 56, max_pixels=448 * 448)
        import transformers
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor
        if arch == "qwen3_vl":
            return _qwen3_vl(tok, text, special, seed)
        if arch == "qwen2_vl":
            prefix = "Qwen2VL"
            vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                          patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        else:
            prefix = "Qwen2_5_VL"
            vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                          out_hidden_size=64, patch_size=14, spatial_merge_size=2,
                          temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
                          tokens_per_second=2)
            # Sections [4, 2, 2], not the [2, 3, 3] that scaling Qwen2-VL's
            # [16, 24, 24] to head dim 16 gives: a host that ignores the
            # config's mrope_section fails these cases.
            text = dict(text, rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]})
        cfg = getattr(transformers, prefix + "Config")(text_config=text, vision_config=vision,
                                                       **special)
        for c in (cfg, cfg.text_config, cfg.vision_config):
            c._attn_implementation = "eager"
        model = getattr(transformers, prefix + "ForConditionalGeneration")(cfg)
        processor = getattr(transformers, prefix + "Processor")(
            image_processor=Qwen2VLImageProcessor(**pix), tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(**pix), chat_template=QWEN_TEMPLATE)
    _reinit(model, seed)
    model.eval()
    return model, processor


def _qwen3_vl(tok, text, special, seed):
    """Qwen3-VL: the Qwen2 text settings but head dim 16 set explicitly, no
    q/k/v biases, q/k RMSNorm, interleaved M-RoPE sections [2, 3, 3] (a host
    applying them as contiguous sections, or ignoring them, fails), a vision
    tower of 3 blocks of width 32 whose blocks 0 and 1 feed DeepStack levels
    0 and 1 (added after decoder layers 0 and 1), patch 16, merge 2."""
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig,
                              Qwen3VLForConditionalGeneration, Qwen3VLProcessor,
                              Qwen3VLVideoProcessor)
    text = dict(text, head_dim=16, attention_bias=False, rope_theta=5000000.0,
                rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3],
                              "mrope_interleaved": True})
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                  num_position_embeddings=144, deepstack_visual_indexes=[0, 1])
    cfg = Qwen3VLConfig(text_config=text, vision_config=vision, **special)
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c._attn_implementation = "eager"
    model = Qwen3VLForConditionalGeneration(cfg)
    # Each image at most 256 merged tokens of 32 x 32 pixels, as above.
    ip = Qwen2VLImageProcessor(patch_size=16, merge_size=2, min_pixels=64 * 64,
                               max_pixels=512 * 512)
    vp = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, do_sample_frames=False,
                               size={"shortest_edge": 64 * 64, "longest_edge": 4 * 384 * 384})
    processor = Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                 chat_template=QWEN_TEMPLATE)
    _reinit(model, seed)
    model.eval()
    return model, processor
