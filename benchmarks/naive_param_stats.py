"""The naive baseline of bench_param_stats.py: load both models whole with ``from_pretrained``
(float32), then exact ``torch.linalg.svdvals`` of W and ΔW for every 2-D weight.

    uv run python benchmarks/naive_param_stats.py MODEL_A MODEL_B OUT.csv

Writes name, W_spectral, dW_spectral, W_fro, dW_fro (the exact reference σ₁ as well).
"""

import sys

import pandas as pd
import torch
from transformers import AutoModelForCausalLM


def main(a: str, b: str, out: str) -> None:
    model_a = AutoModelForCausalLM.from_pretrained(a, dtype=torch.float32)
    model_b = AutoModelForCausalLM.from_pretrained(b, dtype=torch.float32)
    params_b = dict(model_b.named_parameters())
    rows = []
    with torch.no_grad():
        for name, w in model_a.named_parameters():
            if w.ndim != 2:
                continue
            dw = params_b[name] - w
            rows.append({"name": name, "W_spectral": float(torch.linalg.svdvals(w)[0]),
                         "dW_spectral": float(torch.linalg.svdvals(dw)[0]),
                         "W_fro": float(torch.linalg.vector_norm(w)), "dW_fro": float(torch.linalg.vector_norm(dw))})
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main(*sys.argv[1:4])
