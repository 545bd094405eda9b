"""Knowledge probe: is a fact's answer still linearly present where the output no longer shows it?

For each fact family (hazard, near, far) and hidden state (0 = embeddings, i = output of block
i-1, last = after the final norm), a multinomial logistic-regression probe reads the fact's value
from the state at the answer position: the last token of the cloze prompt, whose next-token
prediction is the value. Prompts are the scored facts of the data folder's facts.csv on the
relation templates (tiny world only). The probe trains on templates 0-4 of some entities and is
tested on the held-out templates 6-7 of *other* entities (entity-grouped folds): with shared
entities it could learn an entity -> value table from entity identity alone, and a model that never
learned the facts would score well. Beside each accuracy: chance (1/number of values of the
relation), the ceiling (test values seen in training), and a shuffled-label control; 95 % intervals
by bootstrap over test entities. High probe accuracy with chance-level answers (evaluate.py) is the
obfuscation signature. Details: brittle/knowledge_probe.py.

    uv run knowledge_probe_analysis.py --model models/tiny/tiny-base
    uv run knowledge_probe_analysis.py --model unlearned_models/tiny-base__rmu --folds 4

Reads <data-dir>/facts.csv (<data-dir>: the preset's DATA_DIR unless given).
Writes <output-root>/<model>/knowledge_probe/: knowledge_probe.csv (one row per family and hidden
state), knowledge_probe_summary.csv (best hidden state per family), knowledge_probe.png,
run_meta.json, _DONE.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from brittle import cli

STEP = "knowledge_probe"


def build_parser(argv=None):
    p = cli.parser(__doc__)
    cli.add_preset_arg(p)
    cli.add_model_arg(p, "model to probe: Hub id or local folder")
    p.add_argument("--data-dir", default=None,
                   help=f"tiny-world data folder holding facts.csv (default: {cli.from_preset(argv, 'DATA_DIR')})")
    p.add_argument("--C", type=cli.positive_float, default=1.0, help="inverse L2 regularisation strength of the probe")
    p.add_argument("--max-iter", type=cli.positive_int, default=1000, help="solver iterations of the probe")
    p.add_argument("--tol", type=cli.positive_float, default=None,
                   help="the solver's stopping tolerance (default: brittle/knowledge_probe.py's TOL, 1e-3: sklearn's "
                        "1e-4 takes twice as long and moved the tiny world's accuracies by under 0.025)")
    p.add_argument("--folds", type=cli.positive_int, default=5, help="entity-grouped folds (capped by the entities)")
    p.add_argument("--n-bootstrap", type=cli.non_negative_int, default=200,
                   help="bootstrap replicates (test entities resampled) of every interval")
    p.add_argument("--max-length", type=cli.positive_int, default=None,
                   help=f"longest prompt in tokens (default: {cli.from_preset(argv, 'MAX_LENGTH')})")
    cli.add_runtime_args(p, batch_size=64)
    cli.add_output_args(p)
    return p


def body(args, argv) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from brittle import steps
    from brittle.capture.prompts import build_inputs, capture
    from brittle.data.build import read_facts
    from brittle.io import StepRun, model_slug, save_figure, write_csv
    from brittle.knowledge_probe import TOL, best_per_family, probe_family, probe_items, value_counts
    from brittle.models import load_model, load_tokenizer
    from brittle.padding import pad_id
    from brittle.plotting.activations import knowledge_probe_curves
    from brittle.presets import data_dir, load_preset, number
    from brittle.runtime import resolve_device, resolve_dtype, seed_everything

    preset = load_preset(args.preset)
    args.data_dir = args.data_dir or str(data_dir(preset))
    args.max_length = args.max_length or number(preset, "MAX_LENGTH")
    args.tol = args.tol or TOL
    facts_path = Path(args.data_dir) / "facts.csv"
    facts = read_facts(facts_path)   # a folder without facts.csv is a one-line error, before any model loads
    items = probe_items(facts)

    # Device and batch size change the states by rounding at most, and the folders are not inputs: not in the marker.
    skip = {"batch_size", "device", "force", "outdir", "output_root"}
    params = {k: v for k, v in vars(args).items() if k not in skip}
    run = StepRun(steps.outdir(args, STEP, model=args.model), params, argv, models={"model": args.model},
                  files={"facts": facts_path})
    if run.should_skip(args.force):
        return 0

    seed_everything(args.seed)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    with run.timed("load"):
        tokenizer = load_tokenizer(args.model, args.revision, args.trust_remote_code)
        model = load_model(args.model, dtype, device, args.revision, args.trust_remote_code)
    # Raw cloze text, no chat template: the position must be the one whose next token is the value,
    # exactly as evaluate.py scores the answer.
    inputs = build_inputs(tokenizer, items.prompts, template="{question}", chat_template=False,
                          position="last", max_length=args.max_length)
    with run.timed("capture"):
        states = capture(model, inputs, pad_id(tokenizer), args.batch_size, desc="answer-position states").numpy()
    del model

    families = list(dict.fromkeys(items.family))
    n_values = value_counts(facts)
    rows = []
    with run.timed("probes"), tqdm(total=len(families) * states.shape[1], desc="knowledge probes") as bar:
        for family in families:
            sel = items.family == family
            for row in probe_family(states[sel], items.subset(sel), n_values, args.folds, args.C, args.max_iter,
                                    args.seed, args.n_bootstrap, tol=args.tol, tick=bar.update):
                rows.append({"family": family, **row})
    results = pd.DataFrame(rows)
    summary = best_per_family(results)
    write_csv(run.path("knowledge_probe.csv"), results)
    write_csv(run.path("knowledge_probe_summary.csv"), summary)
    save_figure(run.path("knowledge_probe.png"), knowledge_probe_curves(results, model_slug(args.model)))
    run.finish(model=args.model, revision=args.revision, device=str(device), dtype=str(dtype),
               n_prompts=len(items.prompts))
    for r in summary.itertuples():
        print(f"{r.family:<7} best hidden state {r.best_hidden_state}: accuracy {r.accuracy:.3f} "
              f"[{r.accuracy_ci_low:.3f}, {r.accuracy_ci_high:.3f}]  chance {r.chance:.3f}  ceiling {r.ceiling:.3f}  "
              f"shuffled control {r.shuffled_accuracy:.3f} (max over states {r.max_shuffled_accuracy:.3f})")
    print(f"wrote {run.outdir}/")
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
