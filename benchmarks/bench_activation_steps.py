"""Benchmark: all activation steps on one shared, cached capture vs each step running its own passes.

Runs steps 4, 5, 8, 9, 11 (one comparison A vs B) and 13 (probes of A and of B) twice in this
process on the same tiny GPT-NeoX pair and texts:

- shared: every step reads one activation cache, so each model runs once per split;
- per-step: every step gets its own empty cache (``--cache-dir``), i.e. the design in which each
  step runs the forward passes it needs itself.

It counts padded tokens through a model (from each step's run_meta.json ``forward_tokens``) and
wall time, and prints the ratios. Step 12 (Lipschitz) perturbs its inputs, so it cannot share a
cache; it runs once and is reported on its own. Texts: data/tiny/{forget,retain}.txt when present
(first --max-samples lines), else a synthetic set.

    uv run python benchmarks/bench_activation_steps.py --max-samples 200
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

PAIR_STEPS = [("collect_activation_norms", "activation_stats"), ("plot_activation_norms", "activation_plots"),
              ("activation_separation_analysis", "activation_separation"),
              ("activation_covariance_analysis", "activation_covariance"),
              ("row_space_projection_analysis", "row_space_projection")]


def _texts(tmp: Path, n: int) -> tuple[Path, Path]:
    data = ROOT / "data" / "tiny"
    if (data / "forget.txt").exists() and (data / "retain.txt").exists():
        return data / "forget.txt", data / "retain.txt"
    import random

    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    for split in ("forget", "retain"):
        lines = [" ".join(rng.choices(words, k=rng.randint(6, 30))) for _ in range(n)]
        (tmp / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return tmp / "forget.txt", tmp / "retain.txt"


def _pair(tmp: Path, forget: Path, retain: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    from brittle.tokenizer import train_word_tokenizer

    tok = train_word_tokenizer(forget.read_text().splitlines() + retain.read_text().splitlines())
    cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=4 * hidden, max_position_embeddings=512, tie_word_embeddings=False)
    paths = []
    for seed, name in ((0, "bench-a"), (1, "bench-b")):
        torch.manual_seed(seed)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
        paths.append(tmp / name)
    return paths[0], paths[1]


def _run_all(a: Path, b: Path, common: list[str], out: Path, separate_caches: bool) -> tuple[int, float, float]:
    """(forward tokens, wall seconds of all steps, seconds spent obtaining activations)."""
    tokens, capture, t0 = 0, 0.0, time.time()
    jobs = [(mod, step, ["--model-a", str(a), "--model-b", str(b)]) for mod, step in PAIR_STEPS]
    jobs += [("linear_probe_analysis", "linear_probes", ["--model", str(m)]) for m in (a, b)]
    for k, (mod, step, models) in enumerate(jobs):
        extra = ["--cache-dir", str(out / f"cache-{k}")] if separate_caches and mod != "plot_activation_norms" else []
        args = models + ["--output-root", str(out)] + (common if mod != "plot_activation_norms" else []) + extra
        if importlib.import_module(mod).main(args) != 0:
            raise SystemExit(f"{mod} failed")
        meta_dir = out / (f"{a.name}__vs__{b.name}" if step != "linear_probes" else Path(models[1]).name) / step
        meta = json.loads((meta_dir / "run_meta.json").read_text())
        tokens += meta.get("forward_tokens", 0)
        capture += meta.get("timings", {}).get("capture", 0.0)
    return tokens, time.time() - t0, capture


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-samples", type=int, default=200)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--n-bootstrap", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        forget, retain = _texts(tmp, args.max_samples)
        a, b = _pair(tmp, forget, retain, args.hidden, args.layers)
        common = ["--forget-file", str(forget), "--retain-file", str(retain), "--max-samples", str(args.max_samples),
                  "--device", "cpu", "--n-bootstrap", str(args.n_bootstrap)]
        shared = _run_all(a, b, common, tmp / "shared", separate_caches=False)
        per_step = _run_all(a, b, common, tmp / "per_step", separate_caches=True)
        import local_lipschitzness_analysis

        t0 = time.time()
        local_lipschitzness_analysis.main(["--model-a", str(a), "--model-b", str(b), "--output-root", str(tmp / "lip"),
                                           *common])
        lip_meta = json.loads((tmp / "lip" / f"{a.name}__vs__{b.name}" / "lipschitzness" / "run_meta.json").read_text())
        lip = (lip_meta["forward_tokens"], time.time() - t0)
    print(f"\nGPT-NeoX d={args.hidden}, {args.layers} layers, {args.max_samples} texts per split "
          f"({forget.parent.name} texts); steps 4, 5, 8, 9, 11 for A vs B and 13 for A and B")
    print(f"{'design':<10} {'forward tokens':>15} {'capture s':>10} {'all steps s':>12}")
    for name, (tok, wall, cap) in (("shared", shared), ("per-step", per_step)):
        print(f"{name:<10} {tok:>15,} {cap:>10.1f} {wall:>12.1f}")
    print(f"ratio per-step / shared: tokens {per_step[0] / shared[0]:.2f}x, capture time "
          f"{per_step[2] / shared[2]:.2f}x, wall time of all steps {per_step[1] / shared[1]:.2f}x")
    print(f"step 12 (own perturbed passes, same in both designs): {lip[0]:,} tokens, {lip[1]:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
