"""Create the data folder every later step reads: forget/retain texts, questions, attack sets.

Sources:
  synthetic (default)  the tiny world: templated facts about fictitious pathogens (hazard) and
                       towns (benign), pretraining corpora with and without the hazard domain,
                       cloze/multiple-choice questions on held-out templates (no network needed)
  hf                   deep-ignorance: WMDP-Bio questions (seeded split into a forget part and a
                       held-out evaluation part) and WikiText-2 retain text
  tofu                 TOFU forget10 / retain90 / holdout10 and the "I don't know" answers

Every Hub source reads an offline copy instead with --local-dir: a folder holding wmdp_bio/,
wikitext2_raw/ and tofu/ sub-folders (or, for one source, that dataset's folder itself).

    uv run create_datasets.py                                   # -> data/tiny/
    uv run create_datasets.py --preset deep-ignorance           # source and folder from presets/<name>.env
    uv run create_datasets.py --source hf --local-dir /path/to/data   # -> data/deep-ignorance/
    uv run create_datasets.py --source tofu                     # -> data/tofu/

Writes, under --outdir: forget.txt, retain.txt, forget_qa.jsonl, idk.txt,
questions/{hazard,near,far}_{eval,val}.jsonl (those the source has), attack/{hazard_train.txt,
hazard_eval.jsonl,benign_train.txt}; synthetic also retain_near.txt (the near-domain retain texts),
<texts>.groups.txt (the entity of each line of forget, retain and retain_near), corpus/{full,
filtered}.txt and facts.csv; tofu qa/*.jsonl; manifest.json (line counts, sha256, seeds, the split
and, synthetic, the lexical baseline: out-of-fold AUC of a bag-of-words classifier separating
forget from near-domain retain texts, folds grouped by entity), run_meta.json, _DONE.json.
The same arguments give byte-identical files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from brittle import cli
from brittle.errors import UserError

DEFAULT_DIRS = {"synthetic": "data/tiny", "hf": "data/deep-ignorance", "tofu": "data/tofu"}
LOCAL_SUBDIRS = {"wmdp": "wmdp_bio", "wikitext": "wikitext2_raw", "tofu": "tofu"}


def build_parser(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--preset", default=None, help="take --source and --outdir from presets/<name>.env (DATA_SOURCE, DATA_DIR)")
    p.add_argument("--source", choices=sorted(DEFAULT_DIRS), default=None, help="where the data comes from (default: synthetic)")
    p.add_argument("--outdir", default=None, help="output folder (default: data/tiny, data/deep-ignorance or data/tofu)")
    p.add_argument("--local-dir", default=None, help="offline copies instead of the Hub (see above)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world / the question split")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder is complete with the same parameters")
    g = p.add_argument_group("synthetic")
    g.add_argument("--n-scored", type=cli.positive_int, default=40, help="scored entities per family: hazard (split into subsets A and B), near, far")
    g.add_argument("--n-format", type=cli.positive_int, default=40, help="format entities per schema (all templates in training, never scored)")
    g.add_argument("--filler-per-word", type=cli.positive_int, default=3, help="filler sentences per template word")
    g = p.add_argument_group("hf")
    g.add_argument("--eval-fraction", type=float, default=0.5, help="share of WMDP-Bio questions held out for evaluation")
    g.add_argument("--n-val", type=cli.positive_int, default=200, help="validation questions, drawn from the forget part")
    g.add_argument("--max-retain", type=cli.positive_int, default=None,
                   help="cap on retain texts: WikiText paragraphs for hf (default 1000; as many again go to "
                        "attack/benign_train.txt), TOFU pairs for tofu (default: all 3,600)")
    g.add_argument("--wikitext-split", default="test", choices=["train", "validation", "test"], help="WikiText-2 split for retain text")
    g.add_argument("--forget-corpus", action="store_true", help="forget.txt from the gated cais/wmdp-bio-forget-corpus (needs HF_TOKEN access)")
    g.add_argument("--max-forget-docs", type=cli.positive_int, default=1000, help="documents taken from the forget corpus")
    return p


def local_subdir(root: str | None, name: str) -> Path | None:
    """The offline folder of one dataset: ``<root>/<sub-folder>`` if present, else ``root``."""
    if root is None:
        return None
    root_path = Path(root)
    if not root_path.is_dir():
        raise UserError(f"--local-dir {root} is not a folder")
    sub = root_path / LOCAL_SUBDIRS[name]
    return sub if sub.is_dir() else root_path


def body(args, argv=None) -> int:
    from brittle.data import build
    from brittle.io import StepRun
    from brittle.runtime import load_env

    load_env()  # HF_TOKEN for the gated forget corpus
    if args.preset:
        from brittle.presets import load_preset

        preset = load_preset(args.preset)
        args.source = args.source or preset.get("DATA_SOURCE")
        args.outdir = args.outdir or preset.get("DATA_DIR")
    args.source = args.source or "synthetic"
    if args.source not in DEFAULT_DIRS:
        raise UserError(f"unknown data source {args.source!r} (choose from {', '.join(sorted(DEFAULT_DIRS))})")
    if args.source == "synthetic" and args.n_scored % 2:
        raise UserError("--n-scored must be an even number >= 2 (split into subsets A and B)")
    outdir = Path(args.outdir or DEFAULT_DIRS[args.source])
    params = {"source": args.source, "seed": args.seed, "local_dir": args.local_dir}
    if args.source == "synthetic":
        params.update(n_scored=args.n_scored, n_format=args.n_format, filler_per_word=args.filler_per_word)
    elif args.source == "hf":
        args.max_retain = args.max_retain or 1000
        params.update(eval_fraction=args.eval_fraction, n_val=args.n_val, max_retain=args.max_retain,
                      wikitext_split=args.wikitext_split, forget_corpus=args.forget_corpus,
                      max_forget_docs=args.max_forget_docs)
    else:
        params.update(max_retain=args.max_retain)
    run = StepRun(outdir, params, argv=argv)
    if run.should_skip(args.force):
        return 0

    with run.timed("build"):
        if args.source == "synthetic":
            files, info = build.synthetic_files(args.seed, args.n_scored, args.n_format, args.filler_per_word)
        elif args.source == "hf":
            files, info = build.hf_files(
                args.seed, args.eval_fraction, args.n_val, args.max_retain, args.wikitext_split,
                wmdp_dir=local_subdir(args.local_dir, "wmdp"), wikitext_dir=local_subdir(args.local_dir, "wikitext"),
                forget_corpus=args.forget_corpus, forget_corpus_dir=local_subdir(args.local_dir, "wmdp"),
                max_forget_docs=args.max_forget_docs)
        else:
            files, info = build.tofu_files(local_subdir(args.local_dir, "tofu"), max_retain=args.max_retain)
    manifest = build.write_folder(run.dir, files, info)
    width = max(len(k) for k in manifest["files"])
    for rel, meta in manifest["files"].items():
        print(f"  {rel:<{width}}  {meta['lines']:>6} lines")
    print(f"wrote {outdir}/ ({len(files)} files, manifest.json)")
    if "lexical_baseline" in info:
        print(f"lexical baseline: bag-of-words AUC {info['lexical_baseline']['auc']:.3f} "
              f"({info['lexical_baseline']['texts']}, folds grouped by entity; 0.5 = words say nothing)")
    run.finish(manifest=str(outdir / "manifest.json"))
    return 0


def main(argv=None) -> int:
    return cli.run_main(body, build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
