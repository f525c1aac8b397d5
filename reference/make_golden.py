#!/usr/bin/env python3
"""Writes pdrop's golden cases (tests/golden/) from transformers' own models.

  make_golden.py [--out DIR] [--only ARCH[/CASE],...]   write the cases
  make_golden.py --check [--only ...]                   regenerate into a
      temporary folder and compare with the committed ones: integer arrays
      and JSON exactly, float arrays within 1e-5 + 1e-5 * |x| (float32 math
      may differ in the last bits on another CPU)
  make_golden.py --twice [--only ...]                   generate twice and
      require identical bytes (determinism)

Each architecture's tiny model (pdrop_ref.models) is built once from its
seed; its language model's weights go to DIR/<arch>/weights/, and every case
of CASES to DIR/<arch>/<case>/ (layout: docs/golden.md). The run is
single-threaded, so two runs on one machine write identical bytes.
On bad input (an unknown architecture or case, a case whose kept tokens sit
too close to a tie to replay) it prints one line to stderr, exits 1, and
leaves DIR as it was.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "tests", "golden")

SEEDS = {"llama": 0, "llava": 0, "llava_next": 0, "qwen2_vl": 0, "qwen2_5_vl": 1, "qwen3_vl": 2}
PYRAMID = ([1, 2, 3], [0.5, 0.25, 0.125])   # 4 layers, 4 stages, lambda 0.5


@dataclass
class Spec:
    arch: str
    name: str
    prompt: str = "Describe the image in detail."
    images: list[str] = field(default_factory=list)
    video: bool = False
    spans: list[tuple[int, int]] = field(default_factory=list)   # llama: the stand-in spans
    layer_list: list[int] = field(default_factory=lambda: list(PYRAMID[0]))
    ratios: list[float] = field(default_factory=lambda: list(PYRAMID[1]))
    strategy: str = "pyramid"
    budget: str = "per_span"
    rounding: str = "none"
    steps: int = 4
    dart: dict = field(default_factory=dict)   # Plan's dart_* fields

    @property
    def key(self) -> str:
        return f"{self.arch}/{self.name}"


CASES = [
    # Text only: spans of an 80-token prompt stand in for images. Every
    # schedule kind on the base architecture.
    Spec("llama", "pyramid", prompt="", spans=[(10, 48)]),
    Spec("llama", "single_drop_fp16", prompt="", spans=[(10, 48)], layer_list=[2],
         ratios=[0.3], rounding="fp16"),
    Spec("llama", "two_spans_per_span", prompt="", spans=[(6, 30), (40, 31)]),
    Spec("llama", "two_spans_global", prompt="", spans=[(6, 30), (40, 31)], budget="global"),
    # LLaVA-1.5: 576 image tokens; the peers on the same model.
    Spec("llava", "pyramid_astronaut", images=["astronaut"]),
    Spec("llava", "single_drop_fp16_rocket", prompt="What is shown in this photo?",
         images=["rocket"], layer_list=[2], ratios=[0.25], rounding="fp16"),
    Spec("llava", "two_images_global", prompt="What is the difference between both images?",
         images=["coffee", "chelsea"], layer_list=[2], ratios=[0.25], budget="global"),
    Spec("llava", "fastv_coffee", prompt="Describe the image briefly.", images=["coffee"],
         layer_list=[2], ratios=[0.5], strategy="fastv"),
    Spec("llava", "vtw_astronaut", images=["astronaut"], layer_list=[3], ratios=[0.0],
         strategy="vtw"),
    Spec("llava", "dart_chelsea", prompt="Describe the scene.", images=["chelsea"],
         layer_list=[2], ratios=[0.25], strategy="dart"),
    # LLaVA-NeXT: anyres, the token count follows the aspect ratio.
    Spec("llava_next", "pyramid_chelsea", prompt="Describe the cat.",
         images=["chelsea"]),
    # Qwen2-VL: M-RoPE, GQA, q/k/v biases, video.
    Spec("qwen2_vl", "pyramid_astronaut", images=["astronaut"]),
    Spec("qwen2_vl", "single_drop_fp16_coffee", prompt="What is shown in this photo?",
         images=["coffee"], layer_list=[2], ratios=[0.25], rounding="fp16"),
    Spec("qwen2_vl", "two_images_per_span", prompt="Compare the two images.",
         images=["rocket", "chelsea"], layer_list=[1, 3], ratios=[0.5, 0.25]),
    Spec("qwen2_vl", "two_images_global", prompt="What is the difference between both images?",
         images=["astronaut", "coffee"], layer_list=[1, 3], ratios=[0.5, 0.25], budget="global"),
    Spec("qwen2_vl", "video_pyramid", prompt="What happens in this video?", video=True),
    # DART as its authors run Qwen2-VL (pdrop::dart_qwen2_vl): reduction
    # ratio 0.778, 4 image + 4 text pivots by L1 key norm, the per-pivot quota.
    Spec("qwen2_vl", "dart_authors_coffee", prompt="Describe the image briefly.",
         images=["coffee"], layer_list=[2], ratios=[1 - 0.778], strategy="dart",
         dart={"dart_pivots": 4, "dart_text_pivots": 4, "dart_norm": "l1", "dart_quota": True}),
    # V2Drop: the authors' progressive drops (LLaVA-1.5: keep 0.5, then 0.5 of
    # that, then none, pdrop::v2drop_llava_1_5; Qwen2-VL: 0.25, then 0.05 of
    # that, then none, pdrop::v2drop_qwen2_vl) after each of the tiny
    # models' first three layers; a global budget over two images.
    Spec("llava", "v2drop_coffee", prompt="Describe the image briefly.", images=["coffee"],
         layer_list=[1, 2, 3], ratios=[0.5, 0.25, 0.0], strategy="v2drop"),
    Spec("qwen2_vl", "v2drop_astronaut", prompt="Describe the image briefly.",
         images=["astronaut"], layer_list=[1, 2, 3], ratios=[0.25, 0.0125, 0.0],
         strategy="v2drop"),
    Spec("qwen2_vl", "v2drop_two_images_global", prompt="Compare the two images.",
         images=["rocket", "chelsea"], layer_list=[1, 3], ratios=[0.5, 0.25],
         strategy="v2drop", budget="global"),
    # Qwen2.5-VL: window attention in the vision tower, time-scaled video positions.
    Spec("qwen2_5_vl", "pyramid_rocket", images=["rocket"]),
    Spec("qwen2_5_vl", "video_pyramid", prompt="What happens in this video?", video=True),
    # Qwen3-VL: interleaved M-RoPE, q/k norms, DeepStack into layers 0 and 1
    # (the drop after layer 1 comes before level 1 is added), one grid per
    # video frame group behind its timestamp.
    Spec("qwen3_vl", "pyramid_rocket", images=["rocket"]),
    Spec("qwen3_vl", "video_pyramid", prompt="What happens in this video?", video=True),
]


class UsageError(Exception):
    pass


def select_cases(only: str | None) -> list[Spec]:
    if not only:
        return list(CASES)
    from pdrop_ref.models import ARCHS
    out = []
    for item in only.split(","):
        item = item.strip()
        arch = item.split("/")[0]
        if arch not in ARCHS:
            raise UsageError(f"unknown architecture '{arch}' in --only (expected one of "
                             f"{', '.join(ARCHS)})")
        got = [c for c in CASES if c.key == item or c.arch == item]
        if not got:
            raise UsageError(f"no case '{item}' (cases of {arch}: "
                             f"{', '.join(c.name for c in CASES if c.arch == arch)})")
        out += [c for c in got if c not in out]
    return out


def llama_prompt(tok):
    """80 token ids drawn from the vocabulary's words (seeded)."""
    rng = np.random.default_rng(7)
    words = [i for t, i in sorted(tok.get_vocab().items(), key=lambda x: x[1]) if t.isalpha()]
    return rng.choice(words, size=80)


def generate(out: str, specs: list[Spec]) -> None:
    import warnings

    import torch
    import transformers
    from pdrop_ref import case, inputs, models, prune

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for arch in dict.fromkeys(s.arch for s in specs):
        model, proc = models.build(arch, SEEDS[arch])
        wrote_weights = False
        for spec in (s for s in specs if s.arch == arch):
            if arch == "llama":
                ids, spans = llama_prompt(proc), list(spec.spans)
                inp = {"input_ids": torch.tensor(ids)[None]}
                media = {}
            else:
                imgs = [inputs.photo(n) for n in spec.images]
                clip = inputs.pan_clip() if spec.video else None
                inp = inputs.encode(arch, proc, spec.prompt, images=imgs, video=clip)
                spans = prune.image_spans(inp["input_ids"], prune.placeholder_ids(model.config))
                media = {"images": {n: list(inputs.photo(n).size) for n in spec.images}}
                if spec.video:
                    media["video"] = "pan_clip: 4 frames of 448 x 336 from rocket"
            lm, embeds, pos, dense = prune.lm_inputs(model, inp)
            # The layer loop below is the model: with no drop it must give
            # the model's own forward output.
            gap = prune.loop_gap(lm, embeds, pos, spans, dense)
            if gap > 1e-6:
                raise UsageError(f"{spec.key}: the reference's layer loop differs from the "
                                 f"model's forward by {gap:.3g}")
            if not wrote_weights:
                case.write_weights(os.path.join(out, arch, "weights"), lm)
                wrote_weights = True
            plan = prune.Plan(spec.layer_list, spec.ratios, spec.strategy, spec.budget,
                              spec.rounding, **spec.dart)
            try:
                rec = prune.run(lm, embeds, pos, spans, plan, spec.steps)
            except prune.MarginError as e:
                raise UsageError(f"{spec.key}: {e}; change its prompt or the seed") from None
            meta = {
                "arch": arch, "model_class": type(model).__name__, "seed": SEEDS[arch],
                "prompt": spec.prompt, **media,
                "tokens": int(embeds.shape[1]),
                "image_tokens": [int(n) for _, n in spans],
                "schedule": {"layer_list": spec.layer_list, "ratios": spec.ratios,
                             "strategy": spec.strategy, "budget": spec.budget,
                             "rounding": spec.rounding,
                             "positions": plan.position_mode(lm.rows), **spec.dart},
                "kept_per_drop": [int(len(d.kept)) for d in rec.drops],
                "transformers": transformers.__version__,
                "torch": torch.__version__.split("+")[0],
            }
            case.write_case(os.path.join(out, arch, spec.name), embeds[0].numpy(), rec, plan,
                             lm.rows, meta)
            print(f"{spec.key}: {embeds.shape[1]} tokens, image spans {spans}, kept "
                  f"{meta['kept_per_drop']}", flush=True)


def _files(root: str) -> list[str]:
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in fs]
    return sorted(out)


def compare(want: str, got: str, exact: bool) -> list[str]:
    """Differences between two case trees (want: committed, got: fresh)."""
    bad = []
    fw, fg = _files(want), _files(got)
    for f in sorted(set(fw) ^ set(fg)):
        bad.append(f"{f}: only in {'the committed cases' if f in fw else 'the fresh run'}")
    for f in sorted(set(fw) & set(fg)):
        a, b = os.path.join(want, f), os.path.join(got, f)
        if filecmp.cmp(a, b, shallow=False):
            continue
        if exact or not f.endswith(".npy"):
            bad.append(f"{f}: bytes differ")
            continue
        x, y = np.load(a), np.load(b)
        if x.dtype != y.dtype or x.shape != y.shape:
            bad.append(f"{f}: {x.dtype}{x.shape} committed, {y.dtype}{y.shape} fresh")
        elif x.dtype.kind != "f":
            bad.append(f"{f}: integers differ")
        elif not np.allclose(x, y, rtol=1e-5, atol=1e-5):
            bad.append(f"{f}: max difference {np.abs(x - y).max():.3g}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="folder to write (default tests/golden)")
    ap.add_argument("--only", help="comma-separated ARCH or ARCH/CASE")
    ap.add_argument("--check", action="store_true", help="compare a fresh run with --out")
    ap.add_argument("--twice", action="store_true", help="two fresh runs must be byte-identical")
    args = ap.parse_args()
    try:
        specs = select_cases(args.only)
        with tempfile.TemporaryDirectory() as tmp:
            first = os.path.join(tmp, "a")
            generate(first, specs)
            if args.twice:
                second = os.path.join(tmp, "b")
                generate(second, specs)
                bad = compare(first, second, exact=True)
                if bad:
                    raise UsageError("two runs differ: " + "; ".join(bad[:5]))
                print(f"make_golden: two runs wrote identical bytes ({len(specs)} cases)")
            if args.check:
                want = os.path.join(tmp, "want")
                os.makedirs(want)
                for arch in dict.fromkeys(s.arch for s in specs):
                    src = os.path.join(args.out, arch, "weights")
                    if not os.path.isdir(src):
                        raise UsageError(f"{src}: no committed weights to check against")
                    shutil.copytree(src, os.path.join(want, arch, "weights"))
                for s in specs:
                    src = os.path.join(args.out, s.arch, s.name)
                    if not os.path.isdir(src):
                        raise UsageError(f"{src}: no committed case to check against")
                    shutil.copytree(src, os.path.join(want, s.arch, s.name))
                bad = compare(want, first, exact=False)
                if bad:
                    raise UsageError(f"{len(bad)} differences from the committed cases: "
                                     + "; ".join(bad[:5]))
                print(f"make_golden: the committed cases are what the generator writes "
                      f"({len(specs)} cases)")
            if not args.check and not args.twice:
                for arch in dict.fromkeys(s.arch for s in specs):
                    os.makedirs(os.path.join(args.out, arch), exist_ok=True)
                    for name in os.listdir(os.path.join(first, arch)):
                        dst = os.path.join(args.out, arch, name)
                        if os.path.isdir(dst):
                            shutil.rmtree(dst)
                        shutil.copytree(os.path.join(first, arch, name), dst)
                write_index(args.out)
    except UsageError as e:
        print(f"make_golden: {e}", file=sys.stderr)
        return 1
    return 0


def write_index(out: str) -> None:
    """index.json: every case folder with its meta, for people and tools."""
    index = {}
    for arch in sorted(os.listdir(out)):
        d = os.path.join(out, arch)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            m = os.path.join(d, name, "meta.json")
            if os.path.isfile(m):
                with open(m) as f:
                    meta = json.load(f)
                index[f"{arch}/{name}"] = {k: meta[k] for k in
                                           ("tokens", "image_tokens", "schedule", "kept_per_drop")}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
