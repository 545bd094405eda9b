"""Benchmark step 1 (collect_param_stats.py) against a naive baseline on synthetic Pythia-layout
checkpoints, in the same run.

Writes three bf16 checkpoints of a named Pythia layout (GPT-NeoX; 160m, 410m, 1.4b; 6.9b only
with --allow-large, ~14 GB each) under --workdir:
    base        Gaussian weights (std 0.02)
    unlearned   base + a rank-8 change (5 % of ‖W‖ per matrix) plus small dense noise in the MLP
                of every third layer and the attention output of the others; everything else
                bit-identical (an edit of base)
    filtered    independent Gaussian weights (unrelated, full rank: the "trained from scratch" pair)
Then, for base->unlearned and base->filtered, runs as separate processes
    collect_param_stats.py (default stats, streaming, σ₁ by ARPACK)
    benchmarks/naive_param_stats.py (both models via from_pretrained in float32, exact svdvals)
and prints wall time, peak RSS (each process's maximum resident set) and the largest relative σ₁
error of collect_param_stats against the exact values, with ratios. Checkpoints are deleted
afterwards unless --keep.

    uv run python benchmarks/bench_param_stats.py --size 160m

With --previous TREE (a git worktree of an earlier commit, e.g. `git worktree add /tmp/prev
7758f1f`) the baseline is instead that version's collect_param_stats.py: the two run alternately
(previous first) --repeats times on each pair, the table gives the median wall time, the largest
peak RSS and their ratios, and the per-matrix CSVs must agree to --rtol (largest relative
difference over every numeric column; the run fails otherwise). --pairs picks the pairs,
--checkpoints DIR reuses checkpoints written by an earlier run with --keep (only the kinds the
pairs need are written otherwise).

    uv run python benchmarks/bench_param_stats.py --size 410m --previous /tmp/prev --pairs filtered
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {  # Pythia configs (hidden, layers, heads, vocab); intermediate = 4 * hidden
    "160m": (768, 12, 12, 50304), "410m": (1024, 24, 16, 50304),
    "1.4b": (2048, 24, 16, 50304), "6.9b": (4096, 32, 32, 50432),
}
SHARD_BYTES = 1024 ** 3


def config(size: str) -> dict:
    hidden, layers, heads, vocab = LAYOUTS[size]
    return {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": 4 * hidden,
            "vocab_size": vocab, "max_position_embeddings": 2048, "rotary_pct": 0.25, "rotary_emb_base": 10000,
            "use_parallel_residual": True, "tie_word_embeddings": False, "layer_norm_eps": 1e-5,
            "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu", "torch_dtype": "bfloat16"}


def tensor_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a GPT-NeoX checkpoint, read off the HF model built on the meta device."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    with torch.device("meta"):
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**cfg))
    return [(n, tuple(p.shape)) for n, p in model.state_dict().items()]


def change(name: str, w: torch.Tensor, gen: torch.Generator) -> torch.Tensor | None:
    """The planted edit of the "unlearned" model for this tensor, or None (unchanged)."""
    parts = name.split(".")
    if w.ndim != 2 or "layers" not in parts:
        return None
    layer = int(parts[parts.index("layers") + 1])
    target = "mlp" in parts if layer % 3 == 0 else name.endswith("attention.dense.weight")
    if not target:
        return None
    m, n = w.shape
    low = torch.randn(m, 8, generator=gen) @ torch.randn(8, n, generator=gen)
    low *= 0.05 * float(w.norm()) / float(low.norm())
    noise = torch.randn(m, n, generator=gen) * 0.002 * float(w.std())
    return low + noise


KINDS = ("base", "unlearned", "filtered")


def write_checkpoints(size: str, root: Path, kinds: tuple[str, ...] = KINDS) -> dict[str, Path]:
    """Write the synthetic checkpoints named in ``kinds`` (a subset of KINDS; base always) under
    ``root``. The random stream is the same whichever kinds are written, so a base written alone
    equals the base written with the others."""
    cfg = config(size)
    shapes = tensor_shapes(cfg)
    paths = {k: root / f"pythia-{size}-{k}" for k in KINDS if k in kinds or k == "base"}
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(cfg, indent=2))
    gen = torch.Generator().manual_seed(0)
    pending: dict[str, dict] = {k: {} for k in paths}
    weight_map: dict[str, dict] = {k: {} for k in paths}
    shard = {"n": 0, "bytes": 0}

    def flush() -> None:  # one shard file per checkpoint, same tensors in each
        shard["n"] += 1
        fname = f"model-{shard['n']:05d}.safetensors"
        for k in paths:
            save_file(pending[k], paths[k] / fname, metadata={"format": "pt"})
            weight_map[k].update(dict.fromkeys(pending[k], fname))
            pending[k] = {}
        shard["bytes"] = 0

    for name, shape in shapes:
        if "layernorm" in name or "norm" in name.split(".")[-2]:
            base = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
            other = base.clone()
        else:
            base = torch.randn(shape, generator=gen) * 0.02
            other = torch.randn(shape, generator=gen) * 0.02
        delta = change(name, base, gen)
        edited = base + delta if delta is not None else base
        for k, t in (("base", base), ("unlearned", edited), ("filtered", other)):
            if k in paths:
                pending[k][name] = t.to(torch.bfloat16).contiguous()
        shard["bytes"] += base.numel() * 2
        del base, other, edited, delta
        if shard["bytes"] >= SHARD_BYTES:
            flush()
    if pending["base"]:
        flush()
    for k, p in paths.items():
        total = sum(f.stat().st_size for f in p.glob("*.safetensors"))
        (p / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map[k]}))
    return paths


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of a command run as its own process (GNU time)."""
    t0 = time.time()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    wall = time.time() - t0
    if out.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return wall, int(out.stderr.strip().splitlines()[-1]) / 1024 ** 2


def max_rel_diff(csv_a: Path, csv_b: Path) -> float:
    """Largest |a − b| / |a| over every numeric cell of two per-matrix CSVs (rows matched by name;
    equal cells, NaN included, count 0); raises if the names, columns or text cells differ."""
    import numpy as np

    a = pd.read_csv(csv_a).set_index("name")
    b = pd.read_csv(csv_b).set_index("name")
    if sorted(a.index) != sorted(b.index) or list(a.columns) != list(b.columns):
        raise SystemExit(f"{csv_a} and {csv_b} hold different matrices or columns")
    b = b.loc[a.index]
    worst = 0.0
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype.kind not in "fi":
            if not (x.fillna("") == y.fillna("")).all():
                raise SystemExit(f"column {col} differs")
            continue
        x, y = x.to_numpy(float), y.to_numpy(float)
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        rel = np.where(same, 0.0, np.abs(x - y) / np.maximum(np.abs(x), 1e-300))
        worst = max(worst, float(rel.max()))
    return worst


def against_previous(args, paths: dict[str, Path], root: Path) -> list[dict]:
    """Previous version vs this one, alternating, per pair (see the module docstring)."""
    import statistics

    results = []
    for pair in args.pairs:
        runs: dict[str, list[tuple[float, float]]] = {"previous": [], "ours": []}
        for i in range(args.repeats):
            for side, tree in (("previous", Path(args.previous)), ("ours", ROOT)):
                out = root / f"stats_{side}_{pair}_{i}"
                runs[side].append(measure([sys.executable, str(tree / "collect_param_stats.py"), "--model-a",
                                           str(paths["base"]), "--model-b", str(paths[pair]), "--outdir", str(out),
                                           "--force"]))
                print(f"{pair} run {i + 1} {side}: {runs[side][-1][0]:.1f} s, {runs[side][-1][1]:.2f} GB", flush=True)
        diff = max(max_rel_diff(root / f"stats_previous_{pair}_0" / "per_matrix.csv",
                                root / f"stats_{side}_{pair}_{i}" / "per_matrix.csv")
                   for side in ("previous", "ours") for i in range(args.repeats))
        rec = {"pair": f"base->{pair}"}
        for side in ("previous", "ours"):
            rec[f"{side}_s"] = statistics.median(w for w, _ in runs[side])
            rec[f"{side}_rss_gb"] = max(r for _, r in runs[side])
        rec["speedup"] = rec["previous_s"] / rec["ours_s"]
        rec["rss_ratio"] = rec["previous_rss_gb"] / rec["ours_rss_gb"]
        rec["max_rel_diff"] = diff
        results.append(rec)
        print(json.dumps(rec), flush=True)
        if diff > args.rtol:
            raise SystemExit(f"base->{pair}: the two versions' numbers differ by {diff:.2e} > {args.rtol:g}")
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(LAYOUTS), default="160m")
    p.add_argument("--allow-large", action="store_true", help="allow the 6.9b layout (3 x 14 GB on disk)")
    p.add_argument("--workdir", default="/tmp/bench_param_stats")
    p.add_argument("--keep", action="store_true", help="keep the synthetic checkpoints")
    p.add_argument("--skip-baseline", action="store_true",
                   help="only time collect_param_stats (the baseline cannot load the 6.9b pair in 24 GB)")
    p.add_argument("--previous", default=None, help="git worktree of an earlier version: time it against this one")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per side with --previous (median)")
    p.add_argument("--pairs", type=lambda t: t.split(","), default=["unlearned", "filtered"],
                   help="comma-separated subset of unlearned,filtered")
    p.add_argument("--rtol", type=float, default=1e-6, help="largest allowed relative difference with --previous")
    p.add_argument("--checkpoints", default=None, help="reuse the checkpoints under this folder (from --keep)")
    p.add_argument("--skip-ours", action="store_true", help="with --skip-baseline: only write the checkpoints")
    args = p.parse_args(argv)
    if args.size == "6.9b" and not args.allow_large:
        p.error("the 6.9b layout writes ~42 GB of checkpoints: pass --allow-large")
    root = Path(args.workdir)
    if args.checkpoints:
        paths = {k: Path(args.checkpoints) / f"pythia-{args.size}-{k}" for k in KINDS}
    else:
        t0 = time.time()
        paths = write_checkpoints(args.size, root, ("base", *args.pairs))
        print(f"wrote synthetic pythia-{args.size} checkpoints in {time.time() - t0:.0f} s under {root}")
    hidden = LAYOUTS[args.size][0]
    largest = max(LAYOUTS[args.size][3] * hidden, 4 * hidden * hidden) * 4 / 1024 ** 3
    print(f"largest tensor pair in float32: {2 * largest:.2f} GB")
    if args.previous:
        try:
            results = against_previous(args, paths, root)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        print(f"\npythia-{args.size} layout, bf16 checkpoints, {torch.get_num_threads()} torch threads, "
              f"median of {args.repeats} alternating runs")
        print(pd.DataFrame(results).to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        return 0
    results = []
    try:
        for pair in args.pairs:
            if args.skip_ours:
                break
            out = root / f"stats_{pair}"
            cmd = [sys.executable, str(ROOT / "collect_param_stats.py"), "--model-a", str(paths["base"]),
                   "--model-b", str(paths[pair]), "--outdir", str(out), "--force"]
            wall, rss = measure(cmd)
            rec = {"pair": f"base->{pair}", "ours_s": wall, "ours_rss_gb": rss}
            if not args.skip_baseline:
                ref_csv = root / f"naive_{pair}.csv"
                rec["naive_s"], rec["naive_rss_gb"] = measure(
                    [sys.executable, str(ROOT / "benchmarks" / "naive_param_stats.py"), str(paths["base"]),
                     str(paths[pair]), str(ref_csv)])
                ours = pd.read_csv(out / "per_matrix.csv").set_index("name")
                ref = pd.read_csv(ref_csv).set_index("name").loc[ours.index]
                errs = [(ours[c] - ref[c]).abs() / ref[c] for c in ("W_spectral", "dW_spectral")]
                rec["max_sigma1_rel_err"] = float(max(e.max() for e in errs))
                rec["speedup"] = rec["naive_s"] / wall
                rec["rss_ratio"] = rec["naive_rss_gb"] / rss
            results.append(rec)
            print(json.dumps(rec))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    df = pd.DataFrame(results)
    print(f"\npythia-{args.size} layout, bf16 checkpoints, {torch.get_num_threads()} torch threads")
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3g}" if not math.isnan(x) else "nan"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
