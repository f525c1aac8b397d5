#!/usr/bin/env python3
"""Turns pdrop-bench results into the ratio tables of bench/README.md.

    table.py RESULTS.json [MORE.json ...] [--torch TORCH.jsonl] [--readme README.md]

RESULTS are Google Benchmark JSON files (pdrop-bench --benchmark_format=json
or --benchmark_out=FILE); with repetitions, the median aggregates are used,
and a benchmark present in several files takes the median over them. TORCH
holds the JSON lines printed by torch_rank_and_drop.py. Prints the tables in
Markdown; with --readme, replaces the text between the markers
<!-- table:begin --> and <!-- table:end --> of that file instead.

Only ratios are printed, each between two measurements of the same run:
kernel bytes/s over memcpy (and streaming read) bytes/s of the same byte
count, pdrop time over baseline time, threads over one thread. Python 3
standard library only.
"""
import argparse
import json
import re
import statistics
import sys

BEGIN, END = "<!-- table:begin -->", "<!-- table:end -->"


def load(paths):
    """name -> {'cpu': s, 'real': s, 'bps': bytes/s, counters...}, medians."""
    runs = {}
    context = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        context = data.get("context", context)
        entries = data["benchmarks"]
        has_median = any(e.get("aggregate_name") == "median" for e in entries)
        for e in entries:
            if has_median:
                if e.get("aggregate_name") != "median":
                    continue
                name = e["run_name"]
            else:
                if e.get("run_type") == "aggregate":
                    continue
                name = e["name"]
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[e.get("time_unit", "ns")]
            rec = {"cpu": e["cpu_time"] * scale, "real": e["real_time"] * scale,
                   "bps": e.get("bytes_per_second"), "ref_bytes": e.get("ref_bytes"),
                   "flops": e.get("flops")}
            runs.setdefault(name, []).append(rec)
    out = {}
    for name, recs in runs.items():
        out[name] = {k: (statistics.median([r[k] for r in recs]) if recs[0][k] is not None else None)
                     for k in recs[0]}
    return out, context


def time_of(r):
    # Benchmarks registered with UseRealTime carry "/real_time" in their name.
    return r["real"] if r.get("_real") else r["cpu"]


def fmt_ratio(x, suffix=""):
    if x is None:
        return "-"
    return f"{x:.2f}{suffix}" if x < 10 else f"{x:.1f}{suffix}"


def fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def fmt_caches(caches):
    """Google Benchmark's context caches as `L1d 32 KiB x2, ...`."""
    out = []
    for c in caches:
        kind = {"Data": "d", "Instruction": "i"}.get(c.get("type"), "")
        share = c.get("num_sharing", 0)
        out.append(f"L{c.get('level')}{kind} {fmt_bytes(c.get('size', 0))}"
                   + (f" shared by {share} CPUs" if share and share > 1 else " per core"))
    return ", ".join(out) if out else "unknown"


def ratio_row(label, num, den, suffix=""):
    """A `| label | num / den |` row of the two-column comparison table."""
    return f"| {label} | {fmt_ratio(num / den, suffix)} |"


def one_and_two_threads(res, bench):
    """The threads:1 and threads:2 (wall time) results of `bench`, None if absent."""
    return tuple(res.get(f"{bench}/threads:{n}/real_time") for n in (1, 2))


def tables(res, context, torch_runs):
    for name, r in res.items():
        r["_real"] = name.endswith("/real_time")
    lines = []
    simd = context.get("pdrop_simd", "?")
    host = context.get("host_name", "?")
    cpus = context.get("num_cpus", "?")
    mhz = context.get("mhz_per_cpu")
    lines.append(f"Kernels: `{simd}`; {cpus} CPUs"
                 + (f" at {mhz} MHz (nominal)" if mhz else "")
                 + f"; caches {fmt_caches(context.get('caches', []))}; "
                 f"{context.get('date', '')[:10]}. Medians of interleaved repetitions.")
    lines.append("")

    # 1. Bandwidth.
    lines.append("**Bandwidth**: kernel bytes/s over the bytes/s of a plain `memcpy` "
                 "(and of a streaming read) of the same byte count "
                 "(K for scoring, the moved rows for compaction).")
    lines.append("")
    lines.append("| kernel | bytes | / memcpy | / read |")
    lines.append("|---|---:|---:|---:|")
    for name in sorted(res):
        r = res[name]
        if not re.match(r"^(score|compact|compact_heads)/", name) or not r.get("ref_bytes"):
            continue
        ref = int(round(r["ref_bytes"]))
        mc, rd = res.get(f"memcpy/{ref}"), res.get(f"read/{ref}")
        if r["bps"] is None or mc is None:
            continue
        lines.append(f"| `{name}` | {fmt_bytes(ref)} | {fmt_ratio(r['bps'] / mc['bps'])} | "
                     f"{fmt_ratio(r['bps'] / rd['bps']) if rd else '-'} |")
    lines.append("")

    # 1b. Compute: scoring's multiply-adds against one core's FMA peak.
    peak = next((r for n, r in sorted(res.items()) if n.startswith("fma_peak/")), None)
    peak_name = next((n for n in sorted(res) if n.startswith("fma_peak/")), None)
    if peak and peak.get("flops"):
        lines.append(f"**Compute**: scoring's FLOP/s (2 per multiply-add of q.k, "
                     f"Hq x T x dim per query row) over one core's FMA peak "
                     f"(`{peak_name}`: {peak['flops'] / 1e9:.1f} GFLOP/s, independent "
                     f"multiply-add chains in registers). A kernel is bound by whichever "
                     f"of this and the `/ read` column above is higher.")
        lines.append("")
        lines.append("| kernel | GFLOP/s | / FMA peak | / read |")
        lines.append("|---|---:|---:|---:|")
        for name in sorted(res):
            r = res[name]
            if not name.startswith("score/") or not r.get("flops"):
                continue
            rd = res.get(f"read/{int(round(r['ref_bytes']))}") if r.get("ref_bytes") else None
            lines.append(f"| `{name}` | {r['flops'] / 1e9:.1f} | "
                         f"{fmt_ratio(r['flops'] / peak['flops'])} | "
                         f"{fmt_ratio(r['bps'] / rd['bps']) if rd and r['bps'] else '-'} |")
        lines.append("")

    # 2. pdrop against its baselines.
    lines.append("**Speed-up over the plain baseline**: baseline time / pdrop time "
                 "(same inputs, same result).")
    lines.append("")
    lines.append("| pdrop | baseline | speed-up |")
    lines.append("|---|---|---:|")
    pairs = []
    for name in sorted(res):
        m = re.match(r"^(score|compact|compact_heads)/(.*)$", name)
        if m:
            base = {"score": "score_plain", "compact": "compact_gather",
                    "compact_heads": "compact_heads_gather"}[m.group(1)] + "/" + m.group(2)
            pairs.append((name, base))
        m = re.match(r"^select/(\d+)/(\d+)$", name)
        if m:
            for b in ("std_sort", "std_partial_sort", "std_nth_element"):
                pairs.append((name, f"{b}/{m.group(1)}/{m.group(2)}"))
    for name, base in pairs:
        if base in res:
            lines.append(f"| `{name}` | `{base}` | "
                         f"{fmt_ratio(time_of(res[base]) / time_of(res[name]), 'x')} |")
    lines.append("")

    # 3. The whole drop against its memory floor, threads, PyTorch.
    lines.append("**One drop** (`rank_and_drop/llava_next_7b_fp32`: score, keep 1440 of "
                 "2880, keep list, compact 2940 x 4096 fp32 hidden states):")
    lines.append("")
    lines.append("| comparison | ratio |")
    lines.append("|---|---:|")
    rd = res.get("rank_and_drop/llava_next_7b_fp32")
    fl = res.get("rank_and_drop_floor/llava_next_7b_fp32")
    if rd and fl:
        lines.append(ratio_row("time / its memory floor (read K once + copy the kept rows)",
                               time_of(rd), time_of(fl)))
    t1, t2 = one_and_two_threads(res, "rank_and_drop_threads/llava_next_7b_fp32")
    if t1 and t2:
        lines.append(ratio_row("2 threads: speed-up over 1 thread (wall time)",
                               t1["real"], t2["real"], "x"))
    if rd and torch_runs:
        by = {}
        for t in torch_runs:
            by.setdefault((t["name"].rsplit("/", 1)[-1], t["threads"]), []).append(t)
        for (variant, threads), ts in sorted(by.items()):
            torch_cpu = statistics.median(t["cpu_s_median"] for t in ts)
            torch_wall = statistics.median(t["wall_s_median"] for t in ts)
            if threads == 1:
                lines.append(ratio_row(f"PyTorch {ts[0]['torch']} ({variant}, 1 thread) time / "
                                       "pdrop time (1 thread, CPU time)",
                                       torch_cpu, rd["cpu"], "x"))
            elif t2:
                lines.append(ratio_row(f"PyTorch {ts[0]['torch']} ({variant}, {threads} threads) / "
                                       "pdrop (2 threads), wall time",
                                       torch_wall, t2["real"], "x"))
    st1, st2 = one_and_two_threads(res, "score_threads/llava_next_7b_fp16")
    if st1 and st2:
        lines.append(ratio_row("`score` llava_next_7b_fp16, 2 threads: speed-up over 1 (wall)",
                               st1["real"], st2["real"], "x"))
    lines.append("")

    # 4. Scaling.
    for prefix, unit in (("score_sweep/fp16/", "T"), ("select_sweep/", "n"),
                         ("compact_sweep/", "rows")):
        rows = []
        for name, r in res.items():
            m = re.match("^" + re.escape(prefix) + r"(\d+)", name)
            if m:
                rows.append((int(m.group(1)), r))
        if len(rows) < 2:
            continue
        rows.sort(key=lambda x: x[0])
        n0, r0 = rows[0]
        t0 = time_of(r0)
        lines.append(f"**Scaling `{prefix}`**: time per {unit} relative to {unit} = {n0} "
                     "(flat = linear cost)"
                     + ("; and bytes/s over memcpy of the same bytes." if r0.get("ref_bytes")
                        else "."))
        lines.append("")
        lines.append("| | " + " | ".join(f"{unit} = {n}" for n, _ in rows) + " |")
        lines.append("|---|" + "---:|" * len(rows))
        lines.append("| time per " + unit + " | " +
                     " | ".join(fmt_ratio((time_of(r) / n) / (t0 / n0)) for n, r in rows) + " |")
        if r0.get("ref_bytes"):
            cells = []
            for n, r in rows:
                mc = res.get(f"memcpy/{int(round(r['ref_bytes']))}")
                cells.append(fmt_ratio(r["bps"] / mc["bps"]) if mc and r["bps"] else "-")
            lines.append("| / memcpy | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--torch", help="JSON lines from torch_rank_and_drop.py")
    ap.add_argument("--readme", help="rewrite the table section of this file")
    args = ap.parse_args()
    res, context = load(args.results)
    torch_runs = []
    if args.torch:
        with open(args.torch) as f:
            torch_runs = [json.loads(line) for line in f if line.strip()]
    text = tables(res, context, torch_runs)
    if not args.readme:
        sys.stdout.write(text)
        return
    with open(args.readme) as f:
        readme = f.read()
    if BEGIN not in readme or END not in readme:
        sys.exit(f"{args.readme}: markers {BEGIN} / {END} not found")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(args.readme, "w") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)


if __name__ == "__main__":
    main()
