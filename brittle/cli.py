"""The command line every script shares: its flags, its help, and its one-line errors.

Scripts build their parser with :func:`parser` and the ``add_*`` helpers, and run their body
through :func:`run_main`. Then every failure a user can fix, a bad flag included, prints one line
(``error: <cause>; <fix>``) and exits with status 2; an interrupt exits with 130 (143 on SIGTERM)
and leaves no half-written result (``brittle.io``). Nothing here imports torch: ``--help`` must be
instant, so scripts import their heavy libraries inside their body, after parsing.

One name per concept, in every script:

===================  =====================================================================
``--preset``         preset naming models, data folder and sizes (``presets/<name>.env``)
``--model``          one model (``--model-a``/``--model-b`` for a comparison: A is the base)
``--outdir``         the step's own folder; ``--output-root`` the root of all results
``--forget-file``    forget texts, one per line (``--retain-file`` likewise)
``--device``         auto, cpu, cuda, cuda:N, mps; ``--dtype`` auto, float32, bfloat16, float16
``--n-bootstrap``    bootstrap replicates of every confidence interval
``--unlearned-dir``  the folder that holds unlearned model folders
``--force``          recompute even when a finished result with the same inputs exists
===================  =====================================================================
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable, Sequence

from brittle.errors import UserError
from brittle.moment_layers import DEFAULT_MOMENT_LAYERS, parse_spec
from brittle.runtime import DTYPES, check_device


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The docstring verbatim, and each flag's default shown once: appended when the help text
    does not already say it, never for flags without a value (None, switches)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._StoreTrueAction)
                or "default" in text.lower() or action.option_strings == []):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit with status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parser(description: str | None) -> argparse.ArgumentParser:
    """A parser whose help shows the script's docstring verbatim and every real default once."""
    return _Parser(description=description, formatter_class=_HelpFormatter)


def peek(argv: Sequence[str] | None, flag: str, default: str) -> str:
    """The value of ``flag`` in ``argv`` (or ``sys.argv``) before parsing, for help texts that
    show what the chosen preset or method would use; ``default`` when absent."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return default


# ------------------------------------------------------------------------------------ value types
def device_arg(text: str) -> str:
    """``--device``: auto, cpu, cuda, cuda:N or mps, checked against this machine at parse time
    (``brittle.runtime.check_device``), so a missing GPU is an error before any model is loaded or
    any folder is made."""
    try:
        return check_device(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def dtype_arg(text: str) -> str:
    """``--dtype``: auto, float32, bfloat16, float16 (or fp32, bf16, fp16)."""
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}: use auto, float32, bfloat16 or float16")
    return DTYPES[text]


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def _number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


# ------------------------------------------------------------------------------------ shared flags
def add_preset_arg(p: argparse.ArgumentParser, used: bool = True) -> None:
    """``--preset``; ``used=False`` for steps that read no preset value (weight-space steps take the
    flag too, so that every step script accepts one command line)."""
    p.add_argument("--preset", default="tiny", help=(
        "preset naming the models, data folder and sizes (presets/<name>.env, or a path to such a file)" if used
        else "accepted like every step script's; this script takes everything it reads from its other flags"))


def from_preset(argv: Sequence[str] | None, key: str) -> str:
    """For help texts: ``"the preset's KEY: <value> for <preset>"``, reading the preset named on the
    command line (tiny when none is), so ``--help`` shows the default that will really apply."""
    from brittle.presets import data_dir, load_preset

    name = peek(argv, "--preset", "tiny")
    try:
        preset = load_preset(name)
    except UserError:
        return f"the preset's {key}"
    value = data_dir(preset) if key == "DATA_DIR" else preset.get(key, "unset")
    return f"the preset's {key}: {value} for {preset['PRESET']}"


def add_text_args(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    """Forget/retain texts and their sizes; unset flags come from the preset
    (``brittle.presets.TEXT_DEFAULTS``)."""
    p.add_argument("--forget-file", default=None,
                   help=f"forget texts, one per line (default: forget.txt in {from_preset(argv, 'DATA_DIR')})")
    p.add_argument("--retain-file", default=None,
                   help=f"retain texts, one per line (default: retain.txt in {from_preset(argv, 'DATA_DIR')})")
    p.add_argument("--max-samples", type=positive_int, default=None,
                   help=f"texts per split, the first N lines (default: {from_preset(argv, 'MAX_SAMPLES')})")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help=f"tokens per text, longer texts truncated (default: {from_preset(argv, 'MAX_LENGTH')})")


def add_capture_args(p: argparse.ArgumentParser, cache: bool = True) -> None:
    """Flags of the activation steps; ``cache``: the step reads the shared activation cache
    (``brittle.capture``)."""
    if cache:
        p.add_argument("--moment-groups", type=non_negative_int, default=10,
                       help="text groups for covariance and MLP-input moments (bootstrap resolution; disk grows with it)")
        p.add_argument("--moment-layers", type=parse_spec, default=DEFAULT_MOMENT_LAYERS,
                       help="hidden states with second moments in the cache (covariance, CKA, MLP-input energies): "
                            "'all', a count N (N evenly spaced, first and last included; all when the model has "
                            "fewer) or indices 'i,j,...' (one index: '32,'); disk and memory grow with it")
        p.add_argument("--cache-dir", default=None, help="activation cache (default: <output-root>/_activation_cache)")
    p.add_argument("--device-map", default=None, help="'auto' spreads large models over all GPUs (accelerate)")
    p.add_argument("--n-bootstrap", type=non_negative_int, default=200, help="bootstrap replicates of every interval")


SEVERAL_MODELS = ("several models run one after another in this process (the libraries load once), each "
                  "into exactly the folder a one-model call writes")


def add_pair_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-a", required=True, help="reference model (the base): Hub id or local folder")
    p.add_argument("--model-b", required=True, nargs="+", metavar="MODEL_B",
                   help=f"modified model (filtered or unlearned): Hub id or local folder; {SEVERAL_MODELS}")
    p.add_argument("--revision-a", default=None, help="Hub revision of model A")
    p.add_argument("--revision-b", default=None, help="Hub revision of model B")


def add_param_stats_input(p: argparse.ArgumentParser) -> None:
    """Flags of the steps that read step 1's CSVs: the pair (to find the default folders) or the
    param_stats folder itself (``brittle.steps.param_stats_dirs`` resolves them)."""
    p.add_argument("--model-a", default=None, help="reference model (locates the default folders)")
    p.add_argument("--model-b", default=None, nargs="+", metavar="MODEL_B",
                   help=f"modified model (locates the default folders); {SEVERAL_MODELS}")
    p.add_argument("--param-stats", default=None, help="param_stats folder written by collect_param_stats.py "
                   "(default: <output-root>/<slug_a>__vs__<slug_b>/param_stats)")


def add_model_arg(p: argparse.ArgumentParser, help: str = "the model: Hub id or local folder") -> None:
    p.add_argument("--model", required=True, nargs="+", metavar="MODEL", help=f"{help}; {SEVERAL_MODELS}")
    p.add_argument("--revision", default=None, help="Hub revision of --model")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outdir", default=None, help="folder this step writes into "
                   "(default: <output-root>/<comparison or model>/<step>)")
    p.add_argument("--output-root", default="outputs", help="root of all results")
    p.add_argument("--force", action="store_true",
                   help="recompute even if a finished result with the same inputs and parameters exists")


def add_runtime_args(p: argparse.ArgumentParser, batch_size: int | None = 8) -> None:
    p.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", type=dtype_arg, default="auto",
                   help="auto (bfloat16 on a GPU that supports it, else float32), float32, bfloat16 or float16")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="texts per forward pass")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub")


# ------------------------------------------------------------------------------------ running
# The flags that take several models (``--model-b`` of a comparison, ``--model`` of a per-model
# step): the body runs once per model, as if the script had been called once per model.
EACH_MODEL = ("model_b", "model")


def run_main(body: Callable[[argparse.Namespace, list[str]], int], p: argparse.ArgumentParser,
             argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``body(args, argv)``, once per model when several are given.

    With several models (``--model-b A B ...`` or ``--model A B ...``) the body runs once per model,
    with ``args`` and ``argv`` as a one-model call would have them, so each result lands in exactly
    the folder and with exactly the record (``run_meta.json``'s argv) of that call, and skip logic is
    unchanged; what several models save is the process start and the imports. A model that fails
    with a user error is reported and the others still run; the status is then 2.

    A :class:`UserError` becomes one line on stderr and status 2; Ctrl-C status 130 and SIGTERM
    143. Whatever way the body ends without finishing, the results it had begun are discarded
    (``brittle.io.discard_unfinished``): no half-written folder and no completion marker remain.
    """
    from brittle.io import discard_unfinished

    args = p.parse_args(None if argv is None else list(argv))
    command_line = list(sys.argv[1:] if argv is None else argv)
    previous = _on_sigterm()
    try:
        runs = one_call_per_model(p, args, command_line)
        failed = []
        for i, (args_i, argv_i, label) in enumerate(runs):
            if len(runs) > 1:
                print(f"[{i + 1}/{len(runs)}] {label}", flush=True)
            try:
                status = int(body(args_i, argv_i) or 0)
            except UserError as exc:
                print(f"error: {label + ': ' if len(runs) > 1 else ''}{exc}", file=sys.stderr)
                status = 2
            finally:
                discard_unfinished()
            if status:
                failed.append((label, status))
        if len(runs) > 1 and failed:
            print(f"error: {len(failed)} of {len(runs)} models failed: {', '.join(m for m, _ in failed)}",
                  file=sys.stderr)
        return max((s for _, s in failed), default=0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("terminated", file=sys.stderr)
        return 143
    finally:
        discard_unfinished()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def one_call_per_model(p: argparse.ArgumentParser, args: argparse.Namespace,
                       argv: list[str]) -> list[tuple[argparse.Namespace, list[str], str]]:
    """``(args, argv, model)`` for each model of the several-model flag, as one-model calls would
    parse and spell them; a single ``(args, argv, "")`` when no flag of ``EACH_MODEL`` is given."""
    dest = next((d for d in EACH_MODEL if isinstance(getattr(args, d, None), list)), None)
    if dest is None:
        return [(args, argv, "")]
    models = getattr(args, dest)
    flags = next(a.option_strings for a in p._actions if a.dest == dest)
    if len(models) > 1:
        for single in ("outdir", "param_stats", "revision", "revision_b"):
            if getattr(args, single, None) is not None:
                raise UserError(f"--{single.replace('_', '-')} belongs to one model, and {len(models)} were given: "
                                "run them one at a time, or leave it out")
    runs = []
    for model in models:
        one = argparse.Namespace(**vars(args))
        setattr(one, dest, model)
        runs.append((one, _with_one_model(argv, flags, model), model))
    return runs


def _with_one_model(argv: list[str], flags: Sequence[str], model: str) -> list[str]:
    """``argv`` with the values of ``flags`` (``--model-b X Y``, ``--model-b=X``) replaced by ``model``."""
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token in flags:
            out += [token, model]
            i += 1
            while i < len(argv) and not argv[i].startswith("-"):
                i += 1
            continue
        if any(token.startswith(f + "=") for f in flags):
            out.append(f"{token.split('=', 1)[0]}={model}")
        else:
            out.append(token)
        i += 1
    return out


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM so that ``finally`` blocks clean up."""


def _on_sigterm():
    def handler(signum, frame):
        raise _Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a test runner's worker): leave the default
        return None
