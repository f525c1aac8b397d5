"""Writes a replay case: the folder layout pdrop-replay reads (docs/golden.md).

Every array is NPY 1.0, little-endian, C order: float32 <f4, float64 <f8,
int64 <i8. Writing is deterministic (the same arrays give the same bytes)
and atomic per folder: files go to a temporary sibling folder that is
renamed into place once complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from .prune import LM, Plan, Record

STRATEGY_CODE = {"pyramid": 0, "fastv": 1, "vtw": 2, "dart": 3,   # pdrop::Strategy
                 "v2drop": 5}
BUDGET_CODE = {"per_span": 0, "global": 1}                        # pdrop::Budget
ROUNDING_CODE = {"none": 0, "fp16": 1}                            # pdrop::ProbRounding
POSITION_CODE = {"reindex": 0, "original": 1}                     # pdrop::PositionMode


def _save(path: str, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "f" and a.dtype != np.float64:
        a = a.astype("<f4")
    elif a.dtype.kind == "f":
        a = a.astype("<f8")
    else:
        a = a.astype("<i8")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, version=(1, 0), allow_pickle=False)


def model_arrays(lm: LM) -> dict[str, np.ndarray]:
    """The language model's weights in the host's layout (PyTorch's: y = x @ W.T),
    layers stacked first, and its config."""
    cfg = lm.cfg
    layers = lm.layers
    bias = layers[0].self_attn.q_proj.bias is not None

    def stack(get):
        return np.stack([get(l).detach().numpy() for l in layers]).astype(np.float32)

    out = {
        "attn_norm": stack(lambda l: l.input_layernorm.weight),
        "wq": stack(lambda l: l.self_attn.q_proj.weight),
        "wk": stack(lambda l: l.self_attn.k_proj.weight),
        "wv": stack(lambda l: l.self_attn.v_proj.weight),
        "wo": stack(lambda l: l.self_attn.o_proj.weight),
        "ffn_norm": stack(lambda l: l.post_attention_layernorm.weight),
        "w_gate": stack(lambda l: l.mlp.gate_proj.weight),
        "w_up": stack(lambda l: l.mlp.up_proj.weight),
        "w_down": stack(lambda l: l.mlp.down_proj.weight),
        "final_norm": lm.norm.weight.detach().numpy().astype(np.float32),
    }
    if bias:
        out["bq"] = stack(lambda l: l.self_attn.q_proj.bias)
        out["bk"] = stack(lambda l: l.self_attn.k_proj.bias)
        out["bv"] = stack(lambda l: l.self_attn.v_proj.bias)
    out["config"] = np.array([len(layers), cfg.hidden_size, lm.heads, lm.kv_heads,
                              cfg.intermediate_size, lm.head_dim, int(bias), lm.rows], np.int64)
    out["rope_theta"] = np.array([float(cfg.rope_theta)], np.float64)
    out["rms_eps"] = np.array([float(cfg.rms_norm_eps)], np.float64)
    if lm.mrope_section:
        out["mrope_section"] = np.array(lm.mrope_section, np.int64)
    if lm.mrope_interleaved:   # Qwen3-VL: 1 = interleaved sections (pdrop::MRopeLayout)
        out["mrope_layout"] = np.array([1], np.int64)
    if lm.qk_norm:             # Qwen3: RMSNorm over each head of q and k before RoPE
        out["q_norm"] = stack(lambda l: l.self_attn.q_norm.weight)
        out["k_norm"] = stack(lambda l: l.self_attn.k_norm.weight)
    return out


def _atomic_folder(path: str, fill) -> None:
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        fill(tmp)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_weights(path: str, lm: LM) -> None:
    def fill(d):
        for name, a in model_arrays(lm).items():
            _save(os.path.join(d, name + ".npy"), a)
    _atomic_folder(path, fill)


def options_array(plan: Plan, rows: int) -> np.ndarray:
    """(5,), or (8,) when a DART option past the pivots is set (docs/golden.md)."""
    o = [STRATEGY_CODE[plan.strategy], BUDGET_CODE[plan.budget],
         ROUNDING_CODE[plan.rounding], POSITION_CODE[plan.position_mode(rows)],
         plan.dart_pivots]
    if plan.dart_text_pivots or plan.dart_norm != "l2" or plan.dart_quota:
        o += [plan.dart_text_pivots, 0 if plan.dart_norm == "l1" else 1, int(plan.dart_quota)]
    return np.array(o, np.int64)


def write_case(path: str, embeds: np.ndarray, rec: Record, plan: Plan, rows: int,
               meta: dict, weights: LM | None = None) -> None:
    """One case folder: prompt, schedule, per-drop score cases, outputs.
    weights: also write the model into <path>/weights (dump.py); golden
    cases share ../weights."""
    opts = options_array(plan, rows)

    def fill(d):
        _save(os.path.join(d, "embeds.npy"), embeds)
        _save(os.path.join(d, "positions.npy"), rec.positions)
        _save(os.path.join(d, "image_spans.npy"), rec.spans)
        if rec.deepstack is not None:
            _save(os.path.join(d, "deepstack.npy"), rec.deepstack)
        _save(os.path.join(d, "layer_list.npy"), np.array(plan.layer_list, np.int64))
        _save(os.path.join(d, "ratios.npy"), np.array(plan.ratios, np.float64))
        _save(os.path.join(d, "options.npy"), opts)
        for j, dr in enumerate(rec.drops):
            dd = os.path.join(d, f"drop_{j}")
            os.makedirs(dd)
            _save(os.path.join(dd, "options.npy"), opts)
            _save(os.path.join(dd, "image_span.npy"), dr.spans)
            _save(os.path.join(dd, "keep.npy"), dr.counts)
            _save(os.path.join(dd, "k.npy"), dr.k)
            _save(os.path.join(dd, "kept.npy"), dr.kept)
            _save(os.path.join(dd, "positions.npy"), dr.positions)
            if dr.q.shape[1] > 0:
                _save(os.path.join(dd, "q.npy"), dr.q)
                _save(os.path.join(dd, "query_pos.npy"), dr.query_pos)
                _save(os.path.join(dd, "scores.npy"), dr.scores)
            if dr.features is not None:
                _save(os.path.join(dd, "features.npy"), dr.features)
            if dr.before is not None:  # v2drop
                _save(os.path.join(dd, "before.npy"), dr.before)
                _save(os.path.join(dd, "after.npy"), dr.after)
                _save(os.path.join(dd, "query_pos.npy"), dr.query_pos)
                _save(os.path.join(dd, "scores.npy"), dr.scores)
        _save(os.path.join(d, "prefill_out.npy"), rec.prefill_out)
        _save(os.path.join(d, "cache_len.npy"), rec.cache_len)
        _save(os.path.join(d, "decode_tokens.npy"), rec.decode_tokens)
        _save(os.path.join(d, "decode_embeds.npy"), rec.decode_embeds)
        _save(os.path.join(d, "decode_out.npy"), rec.decode_out)
        _save(os.path.join(d, "decode_pos.npy"), rec.decode_pos)
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")
        if weights is not None:
            for name, a in model_arrays(weights).items():
                os.makedirs(os.path.join(d, "weights"), exist_ok=True)
                _save(os.path.join(d, "weights", name + ".npy"), a)
    _atomic_folder(path, fill)
