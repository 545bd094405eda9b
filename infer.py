"""Look at what a model says: one prompt, two models side by side, an interactive loop, or a sweep
of one prompt through every unlearned model.

    uv run infer.py --model models/tiny/tiny-base --prompt "the pathogen vorax is carried by" --greedy
    uv run infer.py --model models/tiny/tiny-base --model-b unlearned_models/tiny-base__npo \\
        --prompt "the pathogen vorax is carried by" --greedy
    uv run infer.py --model EleutherAI/deep-ignorance-unfiltered --interactive
    uv run infer.py --sweep --include-base --preset tiny --prompt "the pathogen vorax is carried by" --greedy

A model is a local folder or a Hub id. The prompt goes through the tokenizer's chat template when
it has one (``--no-chat-template`` sends it raw). Sampling is seeded (``--seed``), so a rerun gives
the same text; ``--greedy`` decodes deterministically.

``--interactive`` reads prompts until Ctrl-D or Ctrl-C and streams tokens as they are generated.

``--sweep`` runs the prompt through every model folder in ``--unlearned-dir`` (``--include-base``
adds the preset's base, filtered, reference and published unlearned models), one model in memory
at a time. Files written (sweep only):
    <outdir>/<sha256 of the prompt>.csv   columns prompt, model, model_path, output; one row per
                                          model; a later sweep of the same prompt updates its
                                          models' rows and keeps the others
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

from brittle import cli
from brittle.errors import UserError

# Preset keys naming models that exist before our unlearning runs, in the order they are swept.
BASE_MODEL_KEYS = ("BASE_MODEL", "FILTERED_MODEL", "REFERENCE_MODEL", "PUBLISHED_UNLEARNED")


def build_parser(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--model", help="model to run: local folder or Hub id")
    p.add_argument("--model-b", help="second model, answered after --model for a side-by-side comparison")
    p.add_argument("--prompt", help="the prompt (required unless --interactive)")
    p.add_argument("--interactive", action="store_true", help="prompt loop with streamed output; Ctrl-D or Ctrl-C quits")
    p.add_argument("--sweep", action="store_true", help="run --prompt through every model in --unlearned-dir and save a CSV")
    p.add_argument("--unlearned-dir", default="unlearned_models", help="folder of model folders swept by --sweep")
    p.add_argument("--include-base", action="store_true",
                   help="with --sweep: also run the preset's base, filtered, reference and published unlearned models")
    cli.add_preset_arg(p)
    p.add_argument("--max-new-tokens", type=cli.positive_int, default=128, help="stop after this many generated tokens")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass")
    p.add_argument("--greedy", action="store_true", help="greedy decoding (ignores --temperature and --top-p)")
    p.add_argument("--no-chat-template", action="store_true", help="send the prompt raw even if the tokenizer has a chat template")
    p.add_argument("--outdir", default="outputs/inference", help="folder of the sweep CSVs")
    p.add_argument("--device", type=cli.device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", type=cli.dtype_arg, default="auto",
                   help="auto (bfloat16 on a GPU that supports it, else float32), float32, bfloat16 or float16")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (set before every generation)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)")
    return p


class LoadedModel:
    """A model and its tokenizer, loaded on demand and freed explicitly (sweeps hold one at a time)."""

    def __init__(self, path: str, args):
        from brittle.io import model_slug
        from brittle.models import load_model, load_tokenizer
        from brittle.runtime import resolve_device, resolve_dtype

        self.path = path
        self.name = model_slug(path)
        device = resolve_device(args.device)
        self.tokenizer = load_tokenizer(path, trust_remote_code=args.trust_remote_code)
        self.model = load_model(path, dtype=resolve_dtype(args.dtype, device), device=device,
                                trust_remote_code=args.trust_remote_code)

    def free(self) -> None:
        del self.model, self.tokenizer
        gc.collect()


def settings_from(args):
    from brittle.generation import GenerationSettings

    if not 0 < args.top_p <= 1:
        raise UserError("--top-p must be in (0, 1]")
    if args.temperature < 0:
        raise UserError("--temperature must be >= 0")
    return GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_p=args.top_p, greedy=args.greedy, seed=args.seed,
                              chat_template=not args.no_chat_template)


def sweep_models(args) -> list[str]:
    """Model folders under --unlearned-dir (those with a config.json, sorted), then the preset's
    models if --include-base; duplicates dropped."""
    from brittle.presets import load_preset

    models: list[str] = []
    models_dir = Path(args.unlearned_dir)
    if models_dir.is_dir():
        for sub in sorted(models_dir.iterdir()):
            if sub.name.startswith("."):      # a model still being written (staging folder)
                continue
            if (sub / "config.json").is_file():
                models.append(str(sub))
            elif sub.is_dir():
                print(f"[sweep] skipping {sub}: no config.json", file=sys.stderr)
    elif not args.include_base:
        raise UserError(f"--unlearned-dir {models_dir} does not exist (train models with unlearn.py, or add --include-base)")
    if args.include_base:
        preset = load_preset(args.preset)
        for key in BASE_MODEL_KEYS:
            models.extend(preset.get(key, "").split())
    unique = list(dict.fromkeys(models))
    if not unique:
        raise UserError(f"nothing to sweep: no model folders in {models_dir}"
                        + ("" if args.include_base else " (add --include-base for the preset's models)"))
    return unique


def run_sweep(args, settings) -> int:
    from brittle.generation import generate
    from brittle.inference_store import sweep_csv_path, upsert_outputs

    models = sweep_models(args)
    csv_path = sweep_csv_path(args.outdir, args.prompt)
    print(f"[sweep] {len(models)} model(s) -> {csv_path}")
    for i, path in enumerate(models, 1):
        loaded = LoadedModel(path, args)
        output = generate(loaded.model, loaded.tokenizer, args.prompt, settings)
        # Saved after every model, so an interrupted sweep keeps what it has done.
        upsert_outputs(csv_path, [{"prompt": args.prompt, "model": loaded.name, "model_path": path,
                                   "output": output}])
        print(f"\n=== [{i}/{len(models)}] {loaded.name} ===\n{output}")
        loaded.free()
    print(f"\n[sweep] wrote {csv_path}")
    return 0


def run_interactive(models: list[LoadedModel], settings) -> int:
    from brittle.generation import generate, text_streamer

    names = " vs ".join(m.name for m in models)
    print(f"Interactive mode ({names}). Ctrl-D or Ctrl-C to quit.")
    try:
        while True:
            try:
                prompt = input("\n>>> ")
            except EOFError:
                print()
                return 0
            if not prompt.strip():
                continue
            for m in models:
                if len(models) > 1:
                    print(f"--- {m.name} ---")
                generate(m.model, m.tokenizer, prompt, settings, streamer=text_streamer(m.tokenizer))
    except KeyboardInterrupt:
        print()
        return 0


def body(args) -> int:
    from brittle.generation import generate
    from brittle.runtime import load_env

    load_env()
    settings = settings_from(args)
    if args.sweep:
        if args.model or args.model_b or args.interactive:
            raise UserError("--sweep runs every model in --unlearned-dir; drop --model/--model-b/--interactive")
        if args.prompt is None:
            raise UserError("--sweep needs --prompt")
        return run_sweep(args, settings)
    if args.include_base:
        raise UserError("--include-base only applies to --sweep")
    if not args.model:
        raise UserError("give --model (or --sweep)")
    paths = [args.model] + ([args.model_b] if args.model_b else [])
    if args.interactive:
        # Both models stay loaded: every prompt goes to each of them.
        return run_interactive([LoadedModel(p, args) for p in paths], settings)
    if args.prompt is None:
        raise UserError("give --prompt or --interactive")
    # One model in memory at a time: answer with A, free it, then B.
    for path in paths:
        loaded = LoadedModel(path, args)
        output = generate(loaded.model, loaded.tokenizer, args.prompt, settings)
        print(f"=== {loaded.name} ===\n{output}\n")
        loaded.free()
    return 0


def main(argv=None) -> int:
    return cli.run_main(lambda args, argv: body(args), build_parser(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
