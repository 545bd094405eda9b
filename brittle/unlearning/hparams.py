"""Hyperparameters of the unlearning methods: one flat namespace shared by all methods.

Each method's defaults, in two profiles, live in :mod:`brittle.unlearning.profiles`; the names a
method uses are the keys of its profile. ``unlearn.py`` exposes every name as a ``--flag``; a flag
the chosen method does not use is an error, so nobody believes a setting took effect when it did not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from brittle.errors import UserError


def boolean(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no) for a yes-or-no hyperparameter."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise UserError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class Spec:
    type: Callable[[str], Any]
    help: str


SPECS: dict[str, Spec] = {
    "steps": Spec(int, "optimizer steps"),
    "lr": Spec(float, "peak learning rate (AdamW)"),
    "warmup_steps": Spec(int, "steps of linear warm-up from 0 to lr"),
    "lr_decay": Spec(str, "after warm-up: constant, or linear (to 0 at the last step, as transformers' linear schedule)"),
    "batch_size": Spec(int, "forget texts per forward pass (and as many retain texts)"),
    "grad_accum": Spec(int, "forward passes (micro-batches of batch_size) accumulated into one optimizer step: "
                            "effective batch = batch_size x grad_accum x processes"),
    "max_length": Spec(int, "tokens per text; longer texts are truncated"),
    "max_grad_norm": Spec(float, "clip the gradient norm to this (0: no clipping)"),
    "weight_decay": Spec(float, "AdamW weight decay"),
    "alpha": Spec(float, "weight of the retain term (cb/cb_lat: the coefficient the schedule scales; lat: of the "
                         "unperturbed retain NLL)"),
    "gamma": Spec(float, "weight of the forget term (grad_diff, simnpo; lat: of the away loss under the perturbation)"),
    "retain_adv_weight": Spec(float, "lat: weight of the retain NLL under the perturbation"),
    "model_steps": Spec(int, "lat: optimizer steps the model takes on each batch against one fitted adversary"),
    "reset_optimizer": Spec(boolean, "lat: start every step from a fresh AdamW state (true/false)"),
    "beta": Spec(float, "inverse temperature β of dpo / npo / simnpo"),
    "margin": Spec(float, "SimNPO reward margin γ"),
    "block": Spec(int, "rmu: block whose output is steered; the MLP output projections of blocks block-2..block train"),
    "steering_coeff": Spec(float, "RMU: norm c of the control vector c·u"),
    "target_hidden_states": Spec(str, "cb / cb_lat: comma-separated hidden states (i = output of block i-1) rerouted"),
    "remove_coef": Spec(float, "cb_lat: weight of the rerouting term"),
    "lora_rank": Spec(int, "LoRA rank r (0: full fine-tuning of every parameter)"),
    "lora_alpha": Spec(float, "LoRA scaling numerator (update = lora_alpha / r · B A)"),
    "lora_dropout": Spec(float, "LoRA dropout"),
    "lora_modules": Spec(str, "cb / cb_lat / lat: all-linear (every linear projection), peft-default (peft's "
                              "per-architecture default, GPT-NeoX: query_key_value) or qkv-up-down (attention q, k, v "
                              "and MLP up, down projections)"),
    "adv_hidden_states": Spec(str, "lat: comma-separated hidden states (i = output of block i-1) the adversary perturbs"),
    "adv_blocks": Spec(str, "cb_lat: comma-separated blocks whose MLP outputs the adversary perturbs"),
    "epsilon": Spec(float, "lat: per-token L2 radius of the adversary's perturbation"),
    "adv_steps": Spec(int, "lat / cb_lat: adversary optimisation steps per training step"),
    "adv_lr": Spec(float, "lat / cb_lat: adversary learning rate"),
    "target_dw_norm": Spec(float, "control: stop at the first step where the L2 norm of the weight change reaches this "
                                  "(0: run every step); unlearn.py --match-dw-norm sets it"),
    "away_threshold": Spec(float, "lat: tokens with log p below this no longer count in the away loss"),
}


def profile_name(preset: dict[str, str], requested: str) -> str:
    """``--profile``, or the preset's UNLEARN_PROFILE for ``auto`` (reference when it sets none)."""
    return requested if requested != "auto" else preset.get("UNLEARN_PROFILE") or "reference"


def add_hyperparameter_flags(p, argv) -> None:
    """One ``--flag`` per hyperparameter. With ``--method`` on the command line, the help shows
    that method's defaults for the chosen preset and profile, and hides the flags it does not use
    (giving one is an error); without, each flag lists the methods that use it."""
    import argparse

    from brittle.cli import peek
    from brittle.presets import load_preset
    from brittle.unlearning.profiles import METHOD_NAMES, PROFILES

    method = peek(argv, "--method", "")
    shown: dict[str, Any] = {}
    title = "method hyperparameters (give --method NAME with --help to see its defaults)"
    if method in PROFILES:
        title = f"{method} hyperparameters"
        try:
            profile = profile_name(load_preset(peek(argv, "--preset", "tiny")), peek(argv, "--profile", "auto"))
            shown = PROFILES[method].get(profile, {})
            title += f" ({profile} profile defaults)"
        except UserError:
            pass
    group = p.add_argument_group(title)
    for name, spec in SPECS.items():
        if name == "batch_size":   # the runtime flag --batch-size; its help is set below
            continue
        users = [m for m in METHOD_NAMES if name in PROFILES[m]["tiny"]]
        if name in shown:
            text = f"{spec.help} (default: {shown[name]})"
        elif method in PROFILES:
            text = argparse.SUPPRESS
        else:
            text = f"{spec.help} [{', '.join(users) if len(users) < len(METHOD_NAMES) else 'every method'}]"
        group.add_argument("--" + name.replace("_", "-"), type=spec.type, default=None, help=text)
    for action in p._actions:
        if action.dest == "batch_size":
            default = f"default: {shown['batch_size']}" if "batch_size" in shown else "default: the method's profile"
            action.help = f"forget texts per step, and as many retain texts ({default})"


def int_list(text: str) -> list[int]:
    """``"3,5"`` -> ``[3, 5]``."""
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None


def resolve(method: str, profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The method's hyperparameters: the profile's defaults updated with the user's overrides.

    ``overrides`` holds only values the user gave (None means not given)."""
    from brittle.unlearning.profiles import PROFILES

    if method not in PROFILES:
        raise UserError(f"unknown method {method!r}; choose from {', '.join(PROFILES)}")
    if profile not in PROFILES[method]:
        raise UserError(f"{method}: no {profile!r} defaults (have {', '.join(PROFILES[method])})")
    hp = dict(PROFILES[method][profile])
    given = {k: v for k, v in overrides.items() if v is not None}
    unused = sorted(set(given) - set(hp))
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise UserError(f"{method} does not use {flags} (it uses: {', '.join(sorted(hp))})")
    hp.update(given)
    return hp
