"""The step registry against the scripts, their real output folders and columns, the report's
readers and the generated column reference.

A miniature pipeline (tiny data, two 2-block models pretrained for a few steps, one unlearned
model) runs every registered step through its script's ``main(argv)``; then every file the registry
names must sit in the folder the registry gives, with exactly the registered columns in order, and
the report must find every number without a missing step or a schema error.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from brittle import steps

ROOT = Path(__file__).resolve().parents[1]
NOT_STEPS = {"infer.py"}            # looks at models; writes no step folder


def test_every_root_script_is_registered_and_every_registered_script_exists():
    scripts = {p.name for p in ROOT.glob("*.py")}
    registered = {s.script for s in steps.STEPS}
    assert registered <= scripts
    assert scripts - NOT_STEPS == registered


@pytest.mark.parametrize("step", [s for s in steps.STEPS if s.scope in (steps.COMPARISON, steps.MODEL)],
                         ids=lambda s: s.name)
def test_scripts_name_their_step_once(step):
    """A step script takes its folder name from the registry through STEP (never a second spelling)."""
    tree = ast.parse((ROOT / step.script).read_text())
    assigned = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "STEP"}
    literal = (ROOT / step.script).read_text().count(f'"{step.name}"')
    assert assigned == {"STEP": step.name} and literal == 1


def test_column_reference_is_generated_from_the_registry():
    doc = ROOT / "docs" / "columns.md"
    assert doc.read_text(encoding="utf-8") == steps.columns_markdown(), \
        "docs/columns.md is stale: uv run python -m brittle.steps markdown > docs/columns.md"


def test_code_and_test_locations_exist():
    for s in steps.STEPS:
        for path in [*s.code.split(","), *s.test.split(",")]:
            assert (ROOT / path.strip()).exists(), f"{s.name}: {path.strip()} does not exist"
        assert set(s.reads) <= {t.name for t in steps.STEPS}


def test_report_readers_name_registered_files_and_columns():
    from brittle.report_numbers import READERS, numbers

    assert len(numbers()) == sum(len(r.numbers) for r in READERS)   # each number has one reader
    for reader in READERS:
        step = steps.step(reader.step)
        step.file(Path(reader.file).name)                            # KeyError if not registered


def test_pipeline_order_puts_every_reader_after_what_it_reads():
    order = [s.name for s in steps.STEPS]
    for s in steps.STEPS:
        if s.scope == steps.COMPARISON:
            assert all(order.index(r) < order.index(s.name) for r in s.reads), s.name


# ------------------------------------------------------------------ every step's real output

@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    """Data, base, filtered, one unlearned model, and every step run on them (about a minute)."""
    import activation_covariance_analysis
    import activation_separation_analysis
    import analyze_mlp_vs_attn
    import collect_activation_norms
    import collect_param_stats
    import create_datasets
    import evaluate
    import knowledge_probe_analysis
    import layerwise_forgetting
    import linear_probe_analysis
    import local_lipschitzness_analysis
    import mlp_nullspace_alignment
    import mode_connectivity_analysis
    import null_space_analysis
    import plot_activation_norms
    import plot_param_stats
    import pretrain
    import relearn
    import report
    import representation_similarity_analysis
    import row_space_projection_analysis
    import unlearn

    root = tmp_path_factory.mktemp("mini")
    data, out = root / "data", root / "outputs"
    preset = root / "mini.env"
    base, filtered = root / "models" / "base", root / "models" / "filtered"
    preset.write_text("\n".join([
        "PRESET=mini", f"DATA_DIR={data}", f"BASE_MODEL={base}", f"FILTERED_MODEL={filtered}",
        "UNLEARN_PROFILE=tiny", "MAX_SAMPLES=24", "MAX_LENGTH=32", "RELEARN_LR=3e-4", "RELEARN_BATCH_SIZE=4",
        "RELEARN_STEPS=2", "RELEARN_EVAL_BATCH_SIZE=64", f"LAYERWISE_QUESTIONS={data}/questions/hazard_eval.jsonl",
        'LAYERWISE_TEMPLATE="{question}"']) + "\n")
    assert create_datasets.main(["--outdir", str(data), "--n-scored", "2", "--n-format", "2"]) == 0
    small = ["--steps", "3", "--hidden", "32", "--layers", "3", "--seq-len", "32", "--batch-size", "4", "--quiet",
             "--threads", "1"]
    assert pretrain.main(["--corpus", str(data / "corpus" / "full.txt"), "--outdir", str(base), *small]) == 0
    assert pretrain.main(["--corpus", str(data / "corpus" / "filtered.txt"), "--tokenizer-corpus",
                          str(data / "corpus" / "full.txt"), "--outdir", str(filtered), *small]) == 0
    unlearned = root / "unlearned_models" / "base__ga_simple"
    assert unlearn.main(["--preset", str(preset), "--method", "ga_simple", "--steps", "2", "--outdir", str(unlearned),
                         "--no-progress", "--device", "cpu"]) == 0
    common = ["--preset", str(preset), "--output-root", str(out)]
    dev = ["--device", "cpu", "--n-bootstrap", "20"]
    pair = ["--model-a", str(base), "--model-b", str(unlearned), *common]
    for script in (collect_param_stats, plot_param_stats, analyze_mlp_vs_attn, null_space_analysis,
                   mlp_nullspace_alignment):
        assert script.main(pair) == 0, script.__name__
    for script in (collect_activation_norms, activation_separation_analysis, activation_covariance_analysis,
                   row_space_projection_analysis, representation_similarity_analysis, mode_connectivity_analysis):
        assert script.main([*pair, *dev]) == 0, script.__name__
    assert plot_activation_norms.main(pair) == 0
    assert local_lipschitzness_analysis.main([*pair, *dev, "--n-perturbations", "2"]) == 0
    for model in (base, filtered, unlearned):
        assert evaluate.main(["--model", str(model), *common, "--device", "cpu"]) == 0
        assert linear_probe_analysis.main(["--model", str(model), *common, *dev]) == 0
        assert knowledge_probe_analysis.main(["--model", str(model), *common, *dev]) == 0
    for attack in ("hazard", "benign"):
        assert relearn.main(["--model", str(unlearned), "--attack", attack, "--base", str(base), "--filtered",
                             str(filtered), "--device", "cpu", *common]) == 0
    assert layerwise_forgetting.main(["--unlearned", str(unlearned), "--n-bootstrap", "20", "--device", "cpu",
                                      *common]) == 0
    assert report.main(["--unlearned-dir", str(root / "unlearned_models"), *common]) == 0
    return {"root": root, "out": out, "data": data, "base": str(base), "filtered": str(filtered),
            "unlearned": str(unlearned)}


def _folder(world, step: steps.Step) -> Path:
    if step.scope == steps.COMPARISON:
        return steps.folder(step.name, world["out"], model_a=world["base"], model_b=world["unlearned"])
    if step.scope == steps.MODEL:
        folder = steps.folder(step.name, world["out"], model=world["unlearned"])
        return folder / "hazard" if step.name == "relearning" else folder
    if step.scope == steps.ROOT:
        return world["out"]
    return {"datasets": world["data"], "pretrain": Path(world["base"]), "unlearn": Path(world["unlearned"])}[step.name]


@pytest.mark.parametrize("step", steps.STEPS, ids=lambda s: s.name)
def test_registered_files_and_columns_are_what_the_script_wrote(mini_world, step):
    folder = _folder(mini_world, step)
    assert (folder / "_DONE.json").is_file() or step.scope == steps.ROOT, folder
    for f in step.files:
        name = f.name.replace("<model>", Path(mini_world["unlearned"]).name)
        path = folder / name
        assert path.exists(), f"{step.name}: {path} missing"
        if f.columns is None or path.is_dir():
            continue
        written = list(pd.read_csv(path, nrows=1).columns)
        declared = [c for c in f.columns if "<" not in c.name]
        # every written column is declared, in the declared order; only optional ones may be absent
        unmatched = [w for w in written if not any(c.matches(w) for c in f.columns)]
        assert not unmatched, f"{step.name}/{f.name}: columns not in the registry: {unmatched}"
        assert [c for c in written if any(c == d.name for d in declared)] == \
            [d.name for d in declared if d.name in written], f"{step.name}/{f.name}: order differs"
        absent = [d.name for d in declared if d.name not in written and not d.optional]
        assert not absent, f"{step.name}/{f.name}: registered but not written: {absent}"


@pytest.mark.parametrize("step", [s for s in steps.STEPS if s.reads and not s.device], ids=lambda s: s.name)
def test_steps_that_read_only_csvs_never_import_torch(mini_world, step, tmp_path):
    """Step 2, 5, 6 and the report run once per model pair or run: importing torch (4 s and 800 MB
    with the CUDA build) for a few CSVs would cost more than their work."""
    models = (["--unlearned-dir", str(mini_world["root"] / "unlearned_models")] if step.scope == steps.ROOT else
              ["--model-a", mini_world["base"], "--model-b", mini_world["unlearned"]])
    args = [*models, "--output-root", str(mini_world["out"]), "--outdir", str(tmp_path), "--force"]
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {Path(step.script).stem} as s\n"
            f"assert s.main({args!r}) == 0\nprint('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False", f"{step.script} imported torch"


def test_the_report_finds_every_number(mini_world):
    text = (mini_world["out"] / "report.md").read_text()
    missing = text.split("## Missing steps")[1].split("##")[0]
    # The mini run compared base with the unlearned model only: base -> filtered comparisons and the
    # filtered model's attacks are missing, and nothing else.
    lines = [line for line in missing.splitlines() if line.startswith("- ")]
    assert lines and all("`filtered`" in line and "`ga_simple`" not in line for line in lines), lines
    table = pd.read_csv(mini_world["out"] / "report_table.csv").set_index("model")
    from brittle.report_numbers import numbers

    for key in numbers():
        assert key in table.columns, key
    row = table.loc["ga_simple"]
    assert row[[k for k, n in numbers().items() if n.signature]].notna().all()


def test_readme_lists_every_script_and_presets_doc_every_key():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## The scripts")[1].split("\n## ")[0]
    for script in {s.script for s in steps.STEPS} | {"infer.py", "pipeline.sh", "create_all_unlearning_models.sh"}:
        assert f"| `{script}` |" in table, script
    keys = {line.split("=", 1)[0] for env in (ROOT / "presets").glob("*.env")
            for line in env.read_text().splitlines() if "=" in line and not line.startswith("#")}
    doc = (ROOT / "docs" / "presets.md").read_text()
    assert not [k for k in keys if f"`{k}`" not in doc], "keys missing from docs/presets.md"


def test_the_registry_query_answers(capsys):
    assert steps.main(["show", "lipschitzness"]) == 0
    shown = capsys.readouterr().out
    assert "local_lipschitzness_analysis.py" in shown and "brittle/sensitivity.py" in shown
    assert "ratio_b_over_a" in shown and "report   lipschitz_change_forget" in shown
    assert steps.main(["show", "relearn.py"]) == 0 and "relearning" in capsys.readouterr().out
    assert steps.main(["show", "nope"]) == 2
    capsys.readouterr()
    assert steps.main(["scripts", "comparison"]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [s for s, _ in listed] == [s.script for s in steps.STEPS if s.scope == steps.COMPARISON]
    assert dict(listed)["collect_param_stats.py"] == "cpu" and dict(listed)["collect_activation_norms.py"] == "device"
