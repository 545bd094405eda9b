"""The tables of a layer-wise forgetting analysis (``layerwise_forgetting.py``), one unlearned model
at a time, from the hidden-state stacks of the three models (``brittle.capture.prompts``) and the
pure metrics of :mod:`brittle.layerwise`.

Column names: ``<metric>_<pair>[_<stat>]`` with metric cosine or l2, pair to_reference,
to_finetuned or finetuned_to_reference (the baseline), stat mean, std, min or max
(docs/columns.md lists them all).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brittle import layerwise

PAIRS = ("to_reference", "to_finetuned")
BASELINE = "finetuned_to_reference"
METRICS = ("cosine", "l2")
STATS = ("mean", "std", "min", "max")
EXAMPLES_PER_PATTERN = 2


@dataclass
class Analysis:
    """Every table and the summary of one unlearned model."""

    distances: pd.DataFrame
    per_hidden_state: pd.DataFrame
    regions: pd.DataFrame
    questions: pd.DataFrame
    summary: dict


def per_state_table(model: str, dist: dict, base: dict, regions: dict) -> pd.DataFrame:
    """One row per hidden state: statistics over questions of each distance, the ratios, closer_to."""
    region_of = {index: name for name, idx in regions.items() for index in idx}
    summaries = {(m, c): layerwise.summarize(dist[c][m]) for m in METRICS for c in PAIRS}
    summaries.update({(m, BASELINE): layerwise.summarize(base[m]) for m in METRICS})
    ratio = {m: layerwise.layer_ratios(dist["to_reference"][m], dist["to_finetuned"][m]) for m in METRICS}
    rows = []
    for index in range(len(ratio["cosine"])):
        row = {"unlearned_model": model, "hidden_state": index, "region": region_of.get(index, "embeddings")}
        for (m, c), summary in summaries.items():
            for stat in STATS:
                row[f"{m}_{c}_{stat}"] = summary[stat][index]
        row["forgetting_ratio"] = ratio["cosine"][index]
        row["forgetting_ratio_l2"] = ratio["l2"][index]
        row["closer_to"] = "reference" if ratio["cosine"][index] > 0.5 else "finetuned"
        rows.append(row)
    return pd.DataFrame(rows)


def analyse(model: str, states: np.ndarray, ref: np.ndarray, ft: np.ndarray, questions: list[str],
            n_bootstrap: int, seed: int) -> Analysis:
    """All tables for one unlearned model. ``states``, ``ref``, ``ft``: (n_questions, L + 1, d)
    hidden states of the unlearned, reference and fine-tuned models on the same prompts."""
    regions = layerwise.layer_regions(ref.shape[1])
    base = layerwise.distances(ft, ref)
    dist = {"to_reference": layerwise.distances(states, ref), "to_finetuned": layerwise.distances(states, ft)}
    d_ref, d_ft = dist["to_reference"]["cosine"], dist["to_finetuned"]["cosine"]
    n_q, n_states = d_ref.shape
    distances = pd.DataFrame({
        "unlearned_model": model,
        "question_idx": np.repeat(np.arange(n_q), n_states),
        "hidden_state": np.tile(np.arange(n_states), n_q),
        **{f"{m}_{c}": dist[c][m].ravel() for c in PAIRS for m in METRICS},
        **{f"{m}_{BASELINE}": base[m].ravel() for m in METRICS},
    })
    ratios = layerwise.region_ratios(d_ref, d_ft, regions)
    ratios_l2 = layerwise.region_ratios(dist["to_reference"]["l2"], dist["to_finetuned"]["l2"], regions)
    cis = layerwise.bootstrap_region_ratios(d_ref, d_ft, regions, n_bootstrap, seed)
    pattern = layerwise.classify(ratios["early"], ratios["late"])
    region_rows = pd.DataFrame([
        {"unlearned_model": model, "region": name, "first_hidden_state": idx[0], "last_hidden_state": idx[-1],
         "n_hidden_states": len(idx), "forgetting_ratio": ratios[name], "ci_low": cis[name][0],
         "ci_high": cis[name][1], "ci_excludes_half": bool(cis[name][0] > 0.5 or cis[name][1] < 0.5),
         "forgetting_ratio_l2": ratios_l2[name], "model_pattern": pattern}
        for name, idx in regions.items()])

    q_ratios = layerwise.question_region_ratios(d_ref, d_ft, regions)
    q_patterns = layerwise.classify(q_ratios["early"], q_ratios["late"])
    question_rows = pd.DataFrame({"unlearned_model": model, "question_idx": np.arange(n_q), "question": questions,
                                  **{f"{name}_ratio": q_ratios[name] for name in regions}, "pattern": q_patterns})
    counts = Counter(q_patterns.tolist())
    examples = {p: [{"question_idx": int(r.question_idx), "question": r.question,
                     "early_ratio": float(r.early_ratio), "late_ratio": float(r.late_ratio)}
                    for r in question_rows[question_rows["pattern"] == p].head(EXAMPLES_PER_PATTERN).itertuples()]
                for p in layerwise.PATTERNS if counts.get(p)}
    summary = {
        "pattern": pattern,
        # The pattern rests on the early and late ratios' sides of 0.5; it is only supported by the
        # data when both bootstrap intervals stay on one side.
        "pattern_supported_by_ci": bool(all(cis[r][0] > 0.5 or cis[r][1] < 0.5 for r in ("early", "late"))),
        "early_closer_to": "reference" if ratios["early"] > 0.5 else "finetuned",
        "late_closer_to": "reference" if ratios["late"] > 0.5 else "finetuned",
        "region_forgetting_ratio": {name: {"ratio": ratios[name], "ci_low": cis[name][0], "ci_high": cis[name][1],
                                           "ratio_l2": ratios_l2[name]} for name in regions},
        "per_hidden_state_forgetting_ratio": layerwise.layer_ratios(d_ref, d_ft).tolist(),
        "pattern_distribution": {p: counts.get(p, 0) for p in layerwise.PATTERNS},
        "pattern_fraction": {p: counts.get(p, 0) / n_q for p in layerwise.PATTERNS},
        "pattern_examples": examples,
        "regions": regions,
        "baseline_finetuned_to_reference_cosine_mean": layerwise.summarize(base["cosine"])["mean"].tolist(),
    }
    return Analysis(distances, per_state_table(model, dist, base, regions), region_rows, question_rows, summary)


def console_summary(model: str, analysis: Analysis) -> str:
    """The per-hidden-state distances and region ratios as printed by the script."""
    summary = analysis.summary
    caveat = "" if summary["pattern_supported_by_ci"] else " (an early or late interval contains 0.5)"
    lines = [f"\n=== {model}: {summary['pattern'].upper()}{caveat} ===",
             f"{'state':>5}  {'-> reference':>12}  {'-> fine-tuned':>13}  {'ratio':>6}  closer to"]
    for r in analysis.per_hidden_state.itertuples():
        lines.append(f"{r.hidden_state:>5}  {r.cosine_to_reference_mean:>12.4f}  {r.cosine_to_finetuned_mean:>13.4f}  "
                     f"{r.forgetting_ratio:>6.3f}  {r.closer_to}")
    for name, v in summary["region_forgetting_ratio"].items():
        lines.append(f"  {name:<6} ratio {v['ratio']:.3f}  95% interval [{v['ci_low']:.3f}, {v['ci_high']:.3f}]")
    dist = ", ".join(f"{p} {n}" for p, n in summary["pattern_distribution"].items() if n)
    lines.append(f"  per-question patterns: {dist}")
    return "\n".join(lines)
