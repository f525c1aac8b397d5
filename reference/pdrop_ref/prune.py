"""Visual-token pruning inside a transformers language model, written plainly.

The model's own modules do all the model math: each decoder layer is called
as the model calls it (hidden states, a causal mask, the model's rotary
embedding for the current positions, the model's DynamicCache), the q/k that
scoring needs come from the layer's own norm, projections and RoPE function
(`apply_rotary_pos_emb`, or `apply_multimodal_rotary_pos_emb` with the
config's mrope_section). What is written here is only the pruning rule:

  pyramid  PyramidDrop (arXiv 2410.17247): before 0-based layer l (a drop
           "after layer l", 1-based), score image tokens by the attention of
           the last prompt token, computed from layer l's own q/k on the
           current hidden states; keep the top int(N0 * ratio).
  fastv    FastV (arXiv 2403.06764): the same score, from the q/k of the
           layer that just ran (0-based l-1, on its input), one drop.
  vtw      VTW (arXiv 2405.05803): every image token withdrawn.
  dart     DART (arXiv 2502.11494), as pdrop defines it (pdrop/dart.hpp):
           pivots by key norm of layer l-1's keys, least-similar tokens by
           cosine on the final-norm hidden states.
  v2drop   V2Drop (arXiv 2509.01552): score of an image token = L2 norm of
           the change the layer that just ran (0-based l-1) made to its
           hidden state, torch.norm(output - input, p=2, dim=-1) on the raw
           residual stream, as the authors' decoder loops compute it
           (xuyang-liu16/V2Drop, llava/model/language_model/V2Drop.py and
           Qwen2-VL/Qwen2VL_V2Drop/modeling_qwen2_vl_self.py: the current
           hidden states against `prev_hidden_states`, the input stored
           before every layer); keep the largest. Progressive: any number
           of drops, ratios of the ORIGINAL counts as PyramidDrop's.

Score of image token i: mean over query heads h and query rows of
softmax_j(q_h . k_g(h),j * d^-1/2)[i] (g(h) = h // (Hq / Hkv), as repeat_kv),
float32 softmax; with rounding='fp16' each probability is rounded to float16
before the mean (as the authors' code casts back to the model dtype).
Selection: the largest scores, ties to the lower token index, kept tokens in
their original order. Budgets: per span int(n_i * ratio) of the ORIGINAL
span lengths, or one global int(sum n_i * ratio).

DeepStack (Qwen3-VL): level j's feature rows (one per visual token, in
sequence order) are added to the visual tokens' hidden states after layer j
(the model's _deepstack_process); a drop removes the rows of the dropped
visual tokens with them, so the later levels go to the kept tokens.

Positions after a drop: re-indexed 0..T'-1 for pyramid with 1-row RoPE (the
authors' behaviour); the kept tokens' original positions otherwise (M-RoPE
rows, FastV, VTW, DART, V2Drop). Decode: a layer whose prompt was re-indexed
continues at its own cache length; with original positions a new token
takes T0 + t (1 row), or max(prompt positions) + 1 + t in every M-RoPE row
(the model's rope_deltas rule, from the whole prompt before any drop).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import torch

STRATEGIES = ("pyramid", "fastv", "vtw", "dart", "v2drop")


class MarginError(RuntimeError):
    """Scores at a keep boundary too close to replay token for token."""


@dataclass
class Plan:
    layer_list: list[int]            # drop after these 1-based layers, ascending
    ratios: list[float]              # kept fraction of N0 after each drop
    strategy: str = "pyramid"
    budget: str = "per_span"         # per_span | global
    rounding: str = "none"           # none | fp16
    dart_pivots: int = 8
    dart_text_pivots: int = 0        # DART's pivots among the text after the image
    dart_norm: str = "l2"            # l2 | l1 (the authors' code)
    dart_quota: bool = False         # DART's per-pivot quota (pdrop/budget.hpp)

    def validate(self, layers: int) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}' (expected one of {', '.join(STRATEGIES)})")
        if self.budget not in ("per_span", "global"):
            raise ValueError(f"unknown budget '{self.budget}' (expected per_span or global)")
        if self.rounding not in ("none", "fp16"):
            raise ValueError(f"unknown rounding '{self.rounding}' (expected none or fp16)")
        if len(self.layer_list) != len(self.ratios) or not self.layer_list:
            raise ValueError(f"layer_list {self.layer_list} and ratios {self.ratios} must be "
                             "non-empty and of one length")
        prev = 0
        for l in self.layer_list:
            if not prev < l < layers:
                raise ValueError(f"drop after layer {l}: layers must ascend in [1, {layers - 1}] "
                                 f"(the model has {layers} layers; a drop after the last one "
                                 "changes nothing)")
            prev = l
        prev_r = 1.0
        for r in self.ratios:
            if not 0.0 <= r <= prev_r:
                raise ValueError(f"ratio {r} must be in [0, {prev_r}] (non-increasing)")
            prev_r = r
        if self.strategy not in ("pyramid", "v2drop") and len(self.layer_list) != 1:
            raise ValueError(f"{self.strategy} drops once; got layer_list {self.layer_list}")
        if self.strategy == "vtw" and self.ratios != [0.0]:
            raise ValueError("vtw withdraws every image token: ratios must be [0.0]")
        if self.dart_norm not in ("l1", "l2") or self.dart_text_pivots < 0:
            raise ValueError(f"DART norm '{self.dart_norm}' must be l1 or l2 and text pivots "
                             f"({self.dart_text_pivots}) >= 0")
        if self.strategy != "dart" and (self.dart_quota or self.dart_text_pivots):
            raise ValueError("text pivots and the DART quota are DART's")
        if self.budget == "global" and self.strategy not in ("pyramid", "fastv", "v2drop"):
            raise ValueError(f"a global budget needs a scoring strategy (pyramid, fastv, v2drop), "
                             f"not {self.strategy}")

    def position_mode(self, rows: int) -> str:
        return "reindex" if self.strategy == "pyramid" and rows == 1 else "original"


class LM:
    """The text model inside a transformers causal LM or VLM."""

    def __init__(self, model):
        inner = model.model
        self.text = inner.language_model if hasattr(inner, "language_model") else inner
        self.layers = self.text.layers
        self.norm = self.text.norm
        self.rotary = self.text.rotary_emb
        self.embed = self.text.embed_tokens
        self.lm_head = model.lm_head
        self.cfg = self.text.config
        attn = self.layers[0].self_attn
        self.module = sys.modules[type(attn).__module__]
        rs = getattr(self.cfg, "rope_scaling", None) or {}
        self.mrope_section = list(rs["mrope_section"]) if "mrope_section" in rs else None
        self.rows = 3 if self.mrope_section else 1
        # Qwen3-VL: the rotary embedding interleaves the sections itself
        # (apply_interleaved_mrope), the attention applies plain RoPE.
        self.mrope_interleaved = bool(rs.get("mrope_interleaved", False))
        self.qk_norm = hasattr(attn, "q_norm")
        # DeepStack levels (L_ds tensors (n_visual, D)), set by lm_inputs.
        self.deepstack: list[torch.Tensor] = []
        self.head_dim = attn.head_dim
        self.heads = self.cfg.num_attention_heads
        self.kv_heads = self.cfg.num_key_value_heads

    def pos_emb(self, x, pos: torch.Tensor):
        """cos/sin for positions pos (rows, T)."""
        return self.rotary(x, pos if self.rows == 1 else pos[:, None, :])

    def qk(self, layer, hidden, pos):
        """Post-RoPE q (Hq, T, d) and k (Hkv, T, d) of `layer` on `hidden`
        (1, T, D) at positions pos: the layer's own norm, projections and
        rotary function."""
        attn = layer.self_attn
        T = hidden.shape[1]
        h = layer.input_layernorm(hidden)
        q = attn.q_proj(h).view(1, T, -1, self.head_dim)
        k = attn.k_proj(h).view(1, T, -1, self.head_dim)
        if self.qk_norm:
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        cos, sin = self.pos_emb(hidden, pos)
        if self.mrope_section and not self.mrope_interleaved:
            q, k = self.module.apply_multimodal_rotary_pos_emb(q, k, cos, sin, self.mrope_section)
        else:
            q, k = self.module.apply_rotary_pos_emb(q, k, cos, sin)
        return q[0], k[0]

    def run_layer(self, layer, hidden, pos, cache, mask):
        T = hidden.shape[1]
        start = cache.get_seq_length(layer.self_attn.layer_idx)
        out = layer(hidden, attention_mask=mask, position_ids=None, past_key_values=cache,
                    use_cache=True, cache_position=torch.arange(start, start + T),
                    position_embeddings=self.pos_emb(hidden, pos))
        return out[0] if isinstance(out, tuple) else out


def causal_mask(T: int) -> torch.Tensor:
    m = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)
    return m[None, None]


def attention_scores(q, query_pos, k, spans, rounding="none", perturb=None):
    """Score of every image token (spans laid end to end): q (Hq, nq, d)
    post-RoPE query rows at positions query_pos, k (Hkv, T, d). perturb, if
    given, multiplies each probability by it (a robustness probe)."""
    hq, nq, d = q.shape
    kk = k.repeat_interleave(hq // k.shape[0], dim=0)            # repeat_kv
    logits = torch.einsum("hnd,htd->hnt", q.double(), kk.double()) * d ** -0.5
    t = torch.arange(k.shape[1])
    for n, p in enumerate(query_pos):
        logits[:, n, t > p] = float("-inf")
    probs = torch.softmax(logits.float(), dim=-1)                 # float32 softmax
    if perturb is not None:
        probs = probs * perturb
    if rounding == "fp16":
        probs = probs.half()
    score = probs.double().sum(dim=(0, 1)) / (hq * nq)
    idx = torch.cat([torch.arange(s, s + n) for s, n in spans]) if spans else torch.zeros(0, dtype=torch.long)
    return score[idx].float()


def budgets(spans0, ratio, budget, quota=None):
    """Kept count per span (or one global count): int(n * ratio); with DART's
    quota (image_pivots, text_pivots), every pivot gets the same number of
    image tokens, floor(min(int(n * ratio), n - image_pivots) / pivots), and
    the image pivots are kept on top, at most n."""
    def one(n):
        b = int(n * ratio)
        if quota is None:
            return b
        pi, pt = quota
        base = min(b, n - pi)
        per = base // (pi + pt) if base > 0 else 0
        return min(n, pi + (pi + pt) * per)
    if budget == "global":
        return [one(sum(n for _, n in spans0))]
    return [one(n) for _, n in spans0]


def _groups(lengths, counts, budget):
    """(offset, length, count) of each selection over the image scores laid
    end to end: one per span, or one over all spans with a global budget."""
    if budget == "global":
        return [(0, sum(lengths), counts[0])]
    offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    return list(zip(offsets, lengths, counts))


def select(scores: torch.Tensor, lengths, counts, budget, check=True, margin=2e-5):
    """Kept indices into the image scores (spans end to end), ascending.
    With check, raises MarginError when the k-th and (k+1)-th scores of a
    selection are within `margin` of each other (relative), which float32
    differences between implementations could reorder (2e-5; 2^-9 with
    fp16-rounded probabilities, where one probability rounding the other way
    moves a score by up to 2^-10 of it). Exact ties are refused too, unless
    margin is 0."""
    s = scores.double()
    kept = []
    for off, n, c in _groups(lengths, counts, budget):
        part = s[off:off + n]
        order = torch.sort(-part, stable=True).indices                # ties: lower index
        if check and 0 < c < n:
            a, b = part[order[c - 1]].item(), part[order[c]].item()
            if (a - b) < margin * abs(a):
                raise MarginError(f"scores {a!r} and {b!r} at the keep boundary ({c} of {n}) "
                                  f"differ by less than {margin:.2g} (relative)")
        kept.extend(sorted((order[:c] + off).tolist()))
    return sorted(kept)


def robust_fp16(lo, hi, lengths, counts, budget, rel) -> None:
    """Raises MarginError unless every kept token's (lo, -index) is above
    every dropped token's (hi, -index), group by group (spans, or all)."""
    kept = set(rel)
    for a, n, _ in _groups(lengths, counts, budget):
        b = a + n
        ks = [(lo[i].item(), -i) for i in range(a, b) if i in kept]
        ds = [(hi[i].item(), -i) for i in range(a, b) if i not in kept]
        if ks and ds and min(ks) <= max(ds):
            raise MarginError(f"with fp16-rounded probabilities, kept token {-min(ks)[1]} and "
                              f"dropped token {-max(ds)[1]} may swap if a probability rounds "
                              "the other way")


def variation_scores(before, after, spans):
    """V2Drop's score of every image token (spans end to end): the L2 norm
    over the hidden dimension of after - before, (T, D) float32 rows
    entering and leaving the layer that just ran."""
    idx = torch.cat([torch.arange(s, s + n) for s, n in spans]) if spans else torch.zeros(0, dtype=torch.long)
    return torch.norm(after[idx] - before[idx], p=2, dim=-1).float()


def _top_by_norm(norms, want, check, what):
    """Indices of the `want` largest norms, larger first, ties to the lower
    index; with check, MarginError when the boundary is within 1e-5."""
    by_norm = torch.sort(-norms, stable=True).indices
    if check and 0 < want < len(norms):
        a, b = norms[by_norm[want - 1]].item(), norms[by_norm[want]].item()
        if a - b < 1e-5 * a:
            raise MarginError(f"DART {what} key norms {a!r} and {b!r} at the pivot boundary "
                              "differ by less than 1e-5 (relative)")
    return by_norm[:want].tolist()


def dart_select(keys, feats, spans, counts, pivots, check=False, text_pivots=0, norm="l2"):
    """DART as pdrop/dart.hpp states it, per span: image pivots are the
    min(pivots, k) tokens of largest key norm (L2 or L1 over keys (T, Hkv*d),
    ties to the lower index); text pivots the text_pivots tokens of largest
    key norm among the tokens after the span that lie in no span (only when
    k > p). The other k - p image tokens are shared out over the pivots in
    order (image pivots, then text pivots; (k-p)//P each, one more for the
    first (k-p)%P), each pivot taking, among the image tokens not yet kept,
    those of lowest cosine similarity to it on feats (T, D), ties to the
    lower index. Returns absolute kept positions, ascending. With check,
    raises MarginError when a pivot-norm or similarity boundary is within
    1e-5 (relative / absolute)."""
    T = keys.shape[0]
    image = {s + i for s, n in spans for i in range(n)}
    all_norms = keys.double().abs().sum(dim=-1) if norm == "l1" else keys.double().norm(dim=-1)
    kept_all = []
    for (s, n), k in zip(spans, counts):
        if k == 0:
            continue
        p = min(pivots, k)
        piv = _top_by_norm(all_norms[s:s + n], p, check, "image")
        extra = k - p
        text = [t for t in range(s + n, T) if t not in image] if extra > 0 else []
        tpiv = [text[i] for i in _top_by_norm(all_norms[text], min(text_pivots, len(text)),
                                              check, "text")] if text else []
        taken = set(piv)
        f = feats[s:s + n].double()
        fn = f.norm(dim=-1)
        visit = [feats[s + i].double() for i in piv] + [feats[t].double() for t in tpiv]
        np_ = len(visit)
        for r, y in enumerate(visit):
            share = extra // np_ + (1 if r < extra % np_ else 0)
            yn = y.norm()
            denom = fn * yn
            cos = torch.where(denom > 0, (f @ y) / torch.where(denom > 0, denom, 1), 0.0)
            order = torch.sort(cos, stable=True).indices.tolist()
            got, last = 0, None
            for i in order:
                if i in taken:
                    continue
                if got == share:
                    if check and last is not None and cos[i].item() - last < 1e-5:
                        raise MarginError(f"DART similarities {last!r} and {cos[i].item()!r} at "
                                          "a pivot's share boundary differ by less than 1e-5")
                    break
                taken.add(i)
                got += 1
                last = cos[i].item()
        kept_all.extend(s + i for i in sorted(taken))
    return kept_all


@dataclass
class DropRecord:
    after_layer: int
    ratio: float
    q: np.ndarray          # (Hq, 1, d) query rows, post-RoPE (empty for vtw / dart)
    query_pos: np.ndarray  # (1,)
    k: np.ndarray          # (Hkv, T, d) keys the strategy read, post-RoPE
    spans: np.ndarray      # (S, 2) image spans at the drop
    counts: np.ndarray     # (S,) per span, or (1,) global
    scores: np.ndarray     # (n,) f4 (empty for vtw / dart)
    kept: np.ndarray       # kept image tokens, positions at the drop, ascending
    positions: np.ndarray  # (rows, T') positions after the drop
    features: np.ndarray | None = None  # dart: (T, D) final-norm rows
    before: np.ndarray | None = None    # v2drop: (T, D) input of layer l-1
    after: np.ndarray | None = None     # v2drop: (T, D) its output


@dataclass
class Record:
    positions: np.ndarray              # (rows, T0) prompt positions
    spans: np.ndarray                  # (S, 2)
    drops: list[DropRecord] = field(default_factory=list)
    prefill_out: np.ndarray | None = None   # (T_final, D) final-norm rows
    cache_len: np.ndarray | None = None     # (L,) each layer's cache after prefill
    decode_tokens: np.ndarray | None = None
    decode_embeds: np.ndarray | None = None  # (steps, D)
    decode_out: np.ndarray | None = None     # (steps, D)
    decode_pos: np.ndarray | None = None     # (steps, L, rows)
    deepstack: np.ndarray | None = None      # (levels, N0, D) DeepStack rows of the prompt


def placeholder_ids(config) -> set[int]:
    """The image (and video) placeholder token ids of a VLM config."""
    ids = {getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)}
    if getattr(config, "video_token_id", None) is not None:
        ids.add(config.video_token_id)
    return ids


def loop_gap(lm: LM, embeds, pos, spans, dense) -> float:
    """How far this module's layer loop without drops is from the model's
    own forward output `dense` (lm_inputs): 0 when the loop is the model
    (DeepStack included)."""
    loop = run(lm, embeds, pos, spans, None, 0).prefill_out
    return float(np.abs(loop - dense[0].numpy()).max())


def image_spans(input_ids: torch.Tensor, token_ids) -> list[tuple[int, int]]:
    """Maximal runs of the image / video placeholder ids, as (start, length)."""
    ids = input_ids.flatten().tolist()
    spans, i = [], 0
    while i < len(ids):
        if ids[i] in token_ids:
            j = i
            while j < len(ids) and ids[j] in token_ids:
                j += 1
            spans.append((i, j - i))
            i = j
        else:
            i += 1
    return spans


@torch.no_grad()
def lm_inputs(model, inputs):
    """The language model's inputs_embeds (1, T, D) and positions (rows, T)
    as the model computes them for `inputs` (its own vision tower, projector,
    merging and rope-index code), and its own dense final-norm output."""
    lm = LM(model)
    got = {}

    def pre(_m, args, kwargs):
        got["embeds"] = kwargs.get("inputs_embeds")
        got["pos"] = kwargs.get("position_ids")
        got["visual"] = kwargs.get("visual_pos_masks")
        got["deepstack"] = kwargs.get("deepstack_visual_embeds")

    def post(_m, args, kwargs, out):
        got["last"] = out.last_hidden_state

    h1 = lm.text.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = lm.text.register_forward_hook(post, with_kwargs=True)
    try:
        if "input_ids" in inputs and not any(k.startswith("pixel") for k in inputs):
            embeds = lm.embed(inputs["input_ids"])
            model(inputs_embeds=embeds, use_cache=False)
        else:
            model(**inputs, use_cache=False)
    finally:
        h1.remove()
        h2.remove()
    embeds = got["embeds"]
    T = embeds.shape[1]
    if lm.rows == 1:
        pos = torch.arange(T)[None]
    else:
        pos = got["pos"]
        if pos.shape[0] == 4:  # text positions prepended (packed form)
            pos = pos[1:]
        pos = pos[:, 0, :]
    if got.get("deepstack") is not None:
        lm.deepstack = [d.detach().clone() for d in got["deepstack"]]
        lm.visual_tokens = got["visual"][0].nonzero().flatten().tolist()
    return lm, embeds.detach().clone(), pos.clone(), got["last"].detach().clone()


@torch.no_grad()
def run(lm: LM, embeds, pos, spans, plan: Plan | None, steps: int, check=True) -> Record:
    """Prefill (1, T0, D) embeds at positions (rows, T0) with the plan's drops
    (None: dense), then `steps` greedy decode steps. lm.deepstack's levels
    go to the visual tokens, which must be the spans' tokens."""
    from transformers import DynamicCache
    L = len(lm.layers)
    if plan is not None:
        plan.validate(L)
    drops = dict(zip(plan.layer_list, plan.ratios)) if plan else {}
    mode = plan.position_mode(lm.rows) if plan else "reindex"
    rec = Record(positions=pos.numpy().copy(), spans=np.array(spans, dtype=np.int64).reshape(-1, 2))
    spans0 = [tuple(s) for s in spans]
    cur = [tuple(s) for s in spans]
    T0 = embeds.shape[1]
    next_pos = int(pos.max()) + 1
    hidden = embeds
    deepstack = list(lm.deepstack)
    if deepstack:
        rec.deepstack = torch.stack(deepstack).numpy().copy()
        flat0 = [s + i for s, n in spans for i in range(n)]
        if flat0 != getattr(lm, "visual_tokens", flat0):
            raise ValueError("the model's visual_pos_masks are not the image spans")
    cache = DynamicCache()
    prev_in = None
    for l in range(L):
        if l in drops:
            ratio = drops[l]
            T = hidden.shape[1]
            quota = (plan.dart_pivots, plan.dart_text_pivots) if plan.dart_quota else None
            counts = budgets(spans0, ratio, plan.budget, quota)
            lengths = [n for _, n in cur]
            q_rows = np.zeros((lm.heads, 0, lm.head_dim), np.float32)
            qpos = np.zeros(0, np.int64)
            scores = np.zeros(0, np.float32)
            feats = None
            v2 = (None, None)
            if plan.strategy in ("pyramid", "fastv"):
                src, src_h, src_pos = ((lm.layers[l], hidden, pos) if plan.strategy == "pyramid"
                                       else (lm.layers[l - 1], *prev_in))
                q, k = lm.qk(src, src_h, src_pos)
                qp = [T - 1]
                qsel = q[:, qp, :]
                sc = attention_scores(qsel, qp, k, cur, plan.rounding)
                fp32 = plan.rounding == "none"
                rel = select(sc, lengths, counts, plan.budget, check and fp32)
                if check and not fp32:
                    # fp16: exact ties are exact in both implementations (sums of
                    # fp16 values below 1 are exact in float32); what may differ
                    # is a probability rounding the other way. Each token's score
                    # range under 3e-6 relative moves of its probabilities must
                    # keep the kept tokens above the dropped ones.
                    up = attention_scores(qsel, qp, k, cur, plan.rounding, 1 + 3e-6)
                    down = attention_scores(qsel, qp, k, cur, plan.rounding, 1 - 3e-6)
                    robust_fp16(torch.minimum(sc, down), torch.maximum(sc, up), lengths, counts,
                                plan.budget, rel)
                if check:  # the same tokens under 3e-6 relative noise on every probability
                    g = torch.Generator().manual_seed(1234 + l)
                    for _ in range(6):
                        noise = 1 + 3e-6 * (torch.randint(0, 2, (lm.heads, 1, T), generator=g) * 2 - 1)
                        if select(attention_scores(qsel, qp, k, cur, plan.rounding, noise), lengths,
                                  counts, plan.budget, False) != rel:
                            raise MarginError(f"drop after layer {l}: the kept tokens change under "
                                              "3e-6 relative noise on the probabilities")
                flat = [s + i for s, n in cur for i in range(n)]
                kept = [flat[i] for i in rel]
                q_rows, qpos, scores = qsel.numpy(), np.array(qp, np.int64), sc.numpy()
            elif plan.strategy == "vtw":
                k = torch.zeros(lm.kv_heads, 0, lm.head_dim)
                kept = []
            elif plan.strategy == "v2drop":
                k = torch.zeros(lm.kv_heads, 0, lm.head_dim)
                before, after = prev_in[0][0], hidden[0]
                sc = variation_scores(before, after, cur)
                rel = select(sc, lengths, counts, plan.budget, check)
                flat = [s + i for s, n in cur for i in range(n)]
                kept = [flat[i] for i in rel]
                qpos, scores = np.array([T - 1], np.int64), sc.numpy()
                v2 = (before.numpy().copy(), after.numpy().copy())
            else:  # dart
                _, k = lm.qk(lm.layers[l - 1], *prev_in)
                feats = lm.norm(hidden)[0]
                keys = k.transpose(0, 1).reshape(T, -1)
                kept = dart_select(keys, feats, cur, counts, plan.dart_pivots, check,
                                   plan.dart_text_pivots, plan.dart_norm)
                feats = feats.numpy()
            kept_set = set(kept)
            image = {s + i for s, n in cur for i in range(n)}
            keep = [t for t in range(T) if t not in image or t in kept_set]
            new_spans = []
            for s, n in cur:
                nk = sum(1 for t in range(s, s + n) if t in kept_set)
                start = sum(1 for t in keep if t < s)
                new_spans.append((start, nk))
            rec_spans = np.array(cur, dtype=np.int64).reshape(-1, 2)
            hidden = hidden[:, keep]
            if deepstack:  # the rows of the kept visual tokens, in order
                flat = [s + i for s, n in cur for i in range(n)]
                rows = [r for r, t in enumerate(flat) if t in kept_set]
                deepstack = [d[rows] for d in deepstack]
            pos = torch.arange(len(keep))[None] if mode == "reindex" else pos[:, keep]
            cur = new_spans
            rec.drops.append(DropRecord(
                after_layer=l, ratio=ratio, q=q_rows, query_pos=qpos,
                k=k.numpy() if plan.strategy != "vtw" else np.zeros((lm.kv_heads, 0, lm.head_dim), np.float32),
                spans=rec_spans, counts=np.array(counts, np.int64), scores=scores,
                kept=np.array(kept, np.int64), positions=pos.numpy().copy(), features=feats,
                before=v2[0], after=v2[1]))
        prev_in = (hidden, pos)
        hidden = lm.run_layer(lm.layers[l], hidden, pos, cache, causal_mask(hidden.shape[1]))
        if l < len(deepstack):  # the model's _deepstack_process after layer l
            vis = torch.tensor([s + i for s, n in cur for i in range(n)], dtype=torch.long)
            hidden = hidden.clone()
            hidden[0, vis] = hidden[0, vis] + deepstack[l]
    out = lm.norm(hidden)
    rec.prefill_out = out[0].numpy().copy()
    rec.cache_len = np.array([cache.get_seq_length(l) for l in range(L)], np.int64)

    tokens, d_embeds, d_out, d_pos = [], [], [], []
    logits = lm.lm_head(out[:, -1:])
    for t in range(steps):
        tok = int(logits[0, -1].argmax())
        x = lm.embed(torch.tensor([[tok]]))
        tokens.append(tok)
        d_embeds.append(x[0, 0].numpy().copy())
        used = []
        for l, layer in enumerate(lm.layers):
            if lm.rows == 3:
                p = next_pos + t
            elif mode == "reindex":
                p = cache.get_seq_length(l)
            else:
                p = T0 + t
            used.append([p] * lm.rows)
            x = lm.run_layer(layer, x, torch.full((lm.rows, 1), p), cache, None)
        o = lm.norm(x)
        logits = lm.lm_head(o)
        d_out.append(o[0, 0].numpy().copy())
        d_pos.append(used)
    D = embeds.shape[2]
    rec.decode_tokens = np.array(tokens, np.int64)
    rec.decode_embeds = np.array(d_embeds, np.float32).reshape(steps, D)
    rec.decode_out = np.array(d_out, np.float32).reshape(steps, D)
    rec.decode_pos = np.array(d_pos, np.int64).reshape(steps, L, lm.rows)
    return rec
