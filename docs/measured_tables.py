"""The two tables of docs/measured.md (and the README's summary of them), from a finished run:

    uv run python docs/measured_tables.py outputs

Reads ``<outputs>/report_table.csv`` (report.py), each unlearned model's
``layerwise_forgetting/regions.csv`` and the relearning curves; prints markdown tables and the
comparison numbers the text quotes beside them (shuffled controls, chance, random baselines).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

FIRST, LAST = ("base", "filtered"), ("control",)


def fmt(x, digits: int = 3) -> str:
    return "–" if pd.isna(x) else f"{x:.{digits}f}"


def steps(x) -> str:
    return "–" if pd.isna(x) else str(int(x))


def ordered(table: pd.DataFrame) -> pd.DataFrame:
    """base, filtered, the unlearned models by recovery AUC, then the control."""
    middle = table[~table["model"].isin(FIRST + LAST)].sort_values("hazard_auc_recovery_log")
    head = table.set_index("model").loc[[m for m in FIRST if m in set(table["model"])]].reset_index()
    tail = table.set_index("model").loc[[m for m in LAST if m in set(table["model"])]].reset_index()
    return pd.concat([head, middle, tail], ignore_index=True)


def regions(root: Path, slug: str) -> str:
    path = root / slug / "layerwise_forgetting" / "regions.csv"
    if not path.is_file():
        return "–"
    ratios = pd.read_csv(path).set_index("region")["forgetting_ratio"]
    return " / ".join(fmt(ratios.get(r)) for r in ("early", "middle", "late"))


def hazard_max(root: Path, slug: str) -> float:
    curve = root / slug / "relearning" / "hazard" / "curve.csv"
    return float(pd.read_csv(curve)["hazard_acc"].max()) if curve.is_file() else float("nan")


def per_model_table(root: Path, t: pd.DataFrame) -> str:
    head = ("| model | hazard | near | far | retain ppl | attack: before → after 100 steps | steps to half gap "
            "| recovery AUC | benign attack: after 100 | layer-wise early / middle / late | pattern |")
    rows = [head, "|" + "---|" * 11]
    for _, r in t.iterrows():
        rows.append(f"| {r['model']} | {fmt(r['eval_hazard_acc'])} | {fmt(r['eval_near_acc'])} | "
                    f"{fmt(r['eval_far_acc'])} | {fmt(r['eval_retain_ppl'], 2)} | "
                    f"{fmt(r['hazard_acc_start'], 2)} → {fmt(r['hazard_acc_final'], 2)} | "
                    f"{steps(r['hazard_steps_to_half_gap'])} | {fmt(r['hazard_auc_recovery_log'], 2)} | "
                    f"{fmt(r['benign_acc_final'], 2)} | {regions(root, r['slug'])} | "
                    f"{r['layerwise_pattern'] if isinstance(r['layerwise_pattern'], str) else '–'} |")
    return "\n".join(rows)


def signature_table(t: pd.DataFrame) -> str:
    head = ("| model | rel. ‖ΔW‖ | null-space frac | Δact selectivity | row-space selectivity "
            "| LMC barrier forget / retain | min CKA forget / retain | probe AUC | knowledge probe (hazard) |")
    rows = [head, "|" + "---|" * 9]
    for _, r in t[t["model"] != "base"].iterrows():
        rows.append(f"| {r['model']} | {fmt(r['rel_dW'])} | {fmt(r['nullspace_frac'], 2)} | "
                    f"{fmt(r['act_change_selectivity'], 2)} | {fmt(r['rowspace_selectivity'])} | "
                    f"{fmt(r['lmc_barrier_forget'])} / {fmt(r['lmc_barrier_retain'])} | "
                    f"{fmt(r['cka_min_forget'], 2)} / {fmt(r['cka_min_retain'], 2)} | {fmt(r['probe_auc_max'], 2)} | "
                    f"{fmt(r['knowledge_probe_hazard'], 2)} |")
    return "\n".join(rows)


def comparisons(root: Path, t: pd.DataFrame) -> str:
    """The baselines the text quotes beside the tables, and the unlearned models' ranges."""
    by = t.set_index("model")
    unlearned = t[~t["model"].isin(FIRST + LAST)]
    lines = []
    if "filtered" in by.index:
        lines.append(f"filtered hazard under attack: max over checkpoints {fmt(hazard_max(root, by.loc['filtered', 'slug']), 3)}")
    for col in ("nullspace_frac", "act_change_selectivity", "rowspace_selectivity", "probe_auc_max",
                "knowledge_probe_hazard", "hazard_acc_final", "rel_dW"):
        lines.append(f"{col}: unlearned {fmt(unlearned[col].min())}–{fmt(unlearned[col].max())}"
                     + (f", control {fmt(by.loc['control', col])}" if "control" in by.index else "")
                     + (f", base {fmt(by.loc['base', col])}" if "base" in by.index else ""))
    for col in ("nullspace_frac_random", "probe_lexical_auc", "knowledge_probe_hazard_chance",
                "knowledge_probe_hazard_control", "cka_null_forget"):
        if col in t:
            lines.append(f"{col} (baseline): {fmt(t[col].min())}–{fmt(t[col].max())}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(argv[0])
    path = root / "report_table.csv"
    if not path.is_file():
        print(f"error: no {path} (run report.py first)", file=sys.stderr)
        return 2
    t = ordered(pd.read_csv(path))
    print(per_model_table(root, t), "", signature_table(t), "", comparisons(root, t), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
