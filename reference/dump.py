#!/usr/bin/env python3
"""Writes a replay case from a local LLaVA, LLaVA-NeXT, Qwen2-VL,
Qwen2.5-VL or Qwen3-VL (DeepStack included) checkpoint, so that a C++
port can be checked with pdrop-replay.

  dump.py --model DIR --image IMG [--image IMG ...] --prompt TEXT --out CASE_DIR
          [--layer-list 8,16,24 --ratios 0.5,0.25,0.125] [--strategy pyramid]
          [--budget per_span] [--rounding none] [--steps 4] [--no-weights]

DIR is a folder from save_pretrained (config, weights, processor files);
nothing is downloaded. IMG is an image file, or one of the photographs the
reference bundles (astronaut, coffee, chelsea, rocket). The model runs in
float32 on the CPU with eager attention, its own processor and chat
template; the pruning is pdrop_ref.prune's (the rules of docs/spec.md).
Without --layer-list the schedule is PyramidDrop's default: 4 stages, drops
after k * floor(layers / 4), ratios 0.5^k.

CASE_DIR gets the case layout of docs/golden.md with the language model's
weights in CASE_DIR/weights (skip them with --no-weights: then only
`pdrop-replay score CASE_DIR/drop_<j>` applies, not `pipeline` or `check`).
Then:  pdrop-replay check CASE_DIR

On bad input (a missing folder or file, an architecture it does not know, a
prompt without image tokens, a schedule past the last layer) it prints one
line to stderr, exits 1 and writes nothing.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MODEL_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
}


class DumpError(Exception):
    pass


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DumpError(f"{what} '{text}' is not a comma-separated list of numbers") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DumpError(f"{what} '{text}' is not a comma-separated list of integers") from None


def dump(args) -> str:
    if not os.path.isdir(args.model):
        raise DumpError(f"--model {args.model}: not a folder")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        raise DumpError(f"--model {args.model}: no config.json (save the model with save_pretrained)")
    import json
    with open(os.path.join(args.model, "config.json")) as f:
        model_type = json.load(f).get("model_type", "?")
    if model_type not in MODEL_CLASSES:
        raise DumpError(f"--model {args.model}: architecture '{model_type}' is not supported "
                        f"(expected one of {', '.join(MODEL_CLASSES)})")
    from pdrop_ref import inputs
    images = [inputs.load_image(spec) for spec in args.image]  # fails before the model loads

    import warnings

    import torch
    import transformers
    from pdrop_ref import case, prune
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cls = getattr(transformers, MODEL_CLASSES[model_type])
    model = cls.from_pretrained(args.model, local_files_only=True, torch_dtype=torch.float32,
                                attn_implementation="eager").eval()
    processor = transformers.AutoProcessor.from_pretrained(args.model, local_files_only=True)
    cfg = model.config
    text_cfg = getattr(cfg, "text_config", cfg)
    rs = getattr(text_cfg, "rope_scaling", None) or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind not in ("default", "mrope"):
        raise DumpError(f"--model {args.model}: RoPE scaling '{kind}' is not supported by the "
                        "replay host (plain RoPE and M-RoPE are)")
    layers = cfg.text_config.num_hidden_layers if hasattr(cfg, "text_config") else cfg.num_hidden_layers
    if args.layer_list is None:
        step = layers // 4
        layer_list = [k * step for k in range(1, 4)]
        ratios = [0.5 ** k for k in range(1, 4)]
    else:
        layer_list = _ints(args.layer_list, "--layer-list")
        ratios = _floats(args.ratios or "", "--ratios")
    plan = prune.Plan(layer_list, ratios, args.strategy, args.budget, args.rounding)
    try:
        plan.validate(layers)
    except ValueError as e:
        raise DumpError(f"schedule: {e}") from None

    inp = inputs.encode(model_type, processor, args.prompt, images=images)
    spans = prune.image_spans(inp["input_ids"], prune.placeholder_ids(cfg))
    if not spans:
        raise DumpError("the prompt holds no image tokens (give at least one --image)")
    lm, embeds, pos, dense = prune.lm_inputs(model, inp)
    gap = prune.loop_gap(lm, embeds, pos, spans, dense)
    if gap > 1e-4:
        raise DumpError(f"the reference's layer loop differs from the model's own forward by "
                        f"{gap:.3g}: this checkpoint uses something the reference does not model")
    try:
        try:
            rec = prune.run(lm, embeds, pos, spans, plan, args.steps)
        except prune.MarginError as e:
            # Scores nearly tied at a keep boundary: an implementation that
            # is right may keep the other token. Written anyway, with a word.
            print(f"dump.py: warning: {e}; pdrop may keep a different token there",
                  file=sys.stderr)
            rec = prune.run(lm, embeds, pos, spans, plan, args.steps, check=False)
    except ValueError as e:
        raise DumpError(str(e)) from None
    meta = {"arch": model_type, "model_class": type(model).__name__,
            "model_dir": os.path.abspath(args.model), "prompt": args.prompt,
            "images": list(args.image), "tokens": int(embeds.shape[1]),
            "image_tokens": [int(n) for _, n in spans],
            "schedule": {"layer_list": layer_list, "ratios": ratios, "strategy": args.strategy,
                         "budget": args.budget, "rounding": args.rounding,
                         "positions": plan.position_mode(lm.rows)},
            "kept_per_drop": [int(len(d.kept)) for d in rec.drops],
            "transformers": transformers.__version__}
    case.write_case(args.out, embeds[0].numpy(), rec, plan, lm.rows, meta,
                    weights=None if args.no_weights else lm)
    return (f"dump.py: {args.out}: {embeds.shape[1]} tokens, image spans {spans}, kept "
            f"{meta['kept_per_drop']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint folder (save_pretrained)")
    ap.add_argument("--image", action="append", default=[], help="image file or bundled photo")
    ap.add_argument("--prompt", required=True, help="the user's text")
    ap.add_argument("--out", required=True, help="case folder to write")
    ap.add_argument("--layer-list", help="drop after these 1-based layers, e.g. 8,16,24")
    ap.add_argument("--ratios", help="kept fraction of the image tokens after each drop")
    ap.add_argument("--strategy", default="pyramid", help="pyramid, fastv, vtw, dart or v2drop")
    ap.add_argument("--budget", default="per_span", help="per_span or global")
    ap.add_argument("--rounding", default="none", help="none or fp16")
    ap.add_argument("--steps", type=int, default=4, help="greedy decode steps (default 4)")
    ap.add_argument("--no-weights", action="store_true", help="do not write CASE_DIR/weights")
    args = ap.parse_args()
    try:
        if args.steps < 0:
            raise DumpError(f"--steps {args.steps} must be >= 0")
        if args.layer_list is not None and args.ratios is None:
            raise DumpError("--layer-list needs --ratios")
        print(dump(args))
    except (DumpError, ValueError, OSError) as e:
        print(f"dump.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
