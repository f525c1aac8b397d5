#!/usr/bin/python3
"""The rank & drop step of rank_and_drop/llava_next_7b_fp32, in PyTorch.

The same work as pdrop-bench's rank_and_drop/llava_next_7b_fp32: from the
last token's q and the next layer's K, its attention (matmul, softmax in
float32), the mean over heads, the top-k of the image tokens, sorted, and the
hidden states compacted by them. Shapes: Hq = Hkv = 32, d = 128, T = 2940,
image [35, 2915), keep 1440, hidden 2940 x 4096, all float32, on the CPU.

--variant reference (default) is the PyramidDrop reference's rank & drop
(pdrop_rank_drop as ported to HF models, e.g. ModelTC/llmc's pyramiddrop.py):
mask added before the softmax, mean over heads then over the query rows,
topk, sort, and torch.cat of [text before, gathered image rows, text after].
--variant gather builds the keep list with torch.cat and gathers the hidden
states once (hidden[:, keep]): the cheapest PyTorch form we know.

Prints one JSON object: seconds per step (wall and process CPU time; min and
median over repeats of `iters` steps each) and the settings. Needs PyTorch
(the project's .venv from scripts/deps.sh has it); pdrop's tests never use it.
"""
import argparse
import json
import math
import statistics
import time

import torch

HQ, D, T, START, N, KEEP, HIDDEN = 32, 128, 2940, 35, 2880, 1440, 4096


def step_reference(q, k, hidden, mask):
    attn = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(D)  # (H, 1, T)
    attn = attn + mask
    attn = torch.nn.functional.softmax(attn, dim=-1, dtype=torch.float32)
    attn = torch.mean(attn, dim=0)[:, START:START + N]         # heads, then image keys
    attn = torch.mean(attn, dim=0)                              # query rows: (N,)
    top = attn.topk(KEEP).indices + START
    top = top.sort().values
    return torch.cat([hidden[:START, :], hidden[top, :], hidden[START + N:, :]], dim=0)


def step_gather(q, k, hidden, mask):
    attn = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(D)  # (H, 1, T)
    attn = torch.softmax(attn + mask, dim=-1, dtype=torch.float32)
    score = attn.mean(dim=0)[-1]                               # (T,)
    top = score[START:START + N].topk(KEEP).indices + START
    top = top.sort().values
    keep = torch.cat((torch.arange(START), top, torch.arange(START + N, T)))
    return hidden[keep]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--iters", type=int, default=20, help="steps per repeat")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--variant", choices=["reference", "gather"], default="reference")
    args = ap.parse_args()
    step = step_reference if args.variant == "reference" else step_gather
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    q = torch.rand(HQ, 1, D, generator=g) * 4 - 2
    k = torch.rand(HQ, T, D, generator=g) * 4 - 2
    hidden = torch.rand(T, HIDDEN, generator=g) * 4 - 2
    mask = torch.zeros(1, T)  # the last token sees every key
    with torch.inference_mode():
        for _ in range(3):
            out = step(q, k, hidden, mask)
        assert out.shape == (T - N + KEEP, HIDDEN)
        wall, cpu = [], []
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.iters):
                out = step(q, k, hidden, mask)
            wall.append((time.perf_counter() - w0) / args.iters)
            cpu.append((time.process_time() - c0) / args.iters)
    print(json.dumps({
        "name": "torch/rank_and_drop/llava_next_7b_fp32/" + args.variant,
        "torch": torch.__version__,
        "threads": args.threads,
        "iters": args.iters,
        "repeats": args.repeats,
        "wall_s_min": min(wall),
        "wall_s_median": statistics.median(wall),
        "cpu_s_min": min(cpu),
        "cpu_s_median": statistics.median(cpu),
    }))


if __name__ == "__main__":
    main()
