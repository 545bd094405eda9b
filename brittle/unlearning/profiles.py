"""Every unlearning method's hyperparameter defaults, in two profiles, and where they come from.

``reference``: the paper's or reference code's values, for the 7B-scale presets; ``tiny``: chosen
on the tiny world's validation questions. A method's profile starts from the profile's common
base and states only what differs. This module imports nothing heavy, so ``unlearn.py --help``
can show the defaults that will really apply.

Layer indices follow the project's numbering (``brittle.capture.hooks``): ``block`` and
``adv_blocks`` name transformer blocks (0-based); ``target_hidden_states`` and
``adv_hidden_states`` name hidden states as transformers numbers ``output_hidden_states``
(i = output of block i − 1), read or perturbed as the raw block output.
"""

from __future__ import annotations

from typing import Any

# What most methods share; the TOFU-family values (AdamW, clip 1, weight decay 0.01) for reference.
_BASE = {
    "reference": dict(max_length=512, max_grad_norm=1.0, weight_decay=0.01, grad_accum=1, warmup_steps=0,
                      lr_decay="constant"),
    "tiny": dict(batch_size=16, max_length=64, max_grad_norm=1.0, weight_decay=0.0, grad_accum=1, warmup_steps=0,
                 lr_decay="constant"),
}
# TOFU, open-unlearning, NPO and SimNPO warm up for one epoch and then decay linearly; at a fixed
# step count that is steps / epochs of warm-up (a constant rate would give about twice the
# integrated step size, which is what the magnitude diagnostics measure).
_TOFU_5_EPOCHS = dict(warmup_steps=12, lr_decay="linear")     # 60 steps = 5 epochs of 12
_TOFU_10_EPOCHS = dict(warmup_steps=12, lr_decay="linear")    # 125 steps = 10 epochs of 12.5


def _profiles(reference: dict[str, Any], tiny: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"reference": {**_BASE["reference"], **reference}, "tiny": {**_BASE["tiny"], **tiny}}


PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # TOFU grad_ascent: AdamW lr 1e-5, effective batch 32, 5 epochs of forget10 (400 QA) ≈ 60 steps.
    "ga_simple": _profiles(dict(steps=60, lr=1e-5, batch_size=32, **_TOFU_5_EPOCHS), dict(steps=30, lr=3e-4)),
    # TOFU KL: gradient ascent plus a KL retain term, same schedule.
    "ga": _profiles(dict(steps=60, lr=1e-5, batch_size=32, alpha=1.0, **_TOFU_5_EPOCHS),
                    dict(steps=300, lr=3e-4, alpha=10.0)),
    # TOFU grad_diff.
    "grad_diff": _profiles(dict(steps=60, lr=1e-5, batch_size=32, gamma=1.0, alpha=1.0, **_TOFU_5_EPOCHS),
                           dict(steps=200, lr=3e-4, gamma=1.0, alpha=4.0)),
    # TOFU / open-unlearning IdkDPO: lr 1e-5, β 0.1, α 1, batch 32, 10 epochs of forget10 (≈125 steps).
    "dpo": _profiles(dict(steps=125, lr=1e-5, batch_size=32, beta=0.1, alpha=1.0, **_TOFU_10_EPOCHS),
                     dict(steps=100, lr=1e-3, beta=0.1, alpha=1.0)),
    # Zhang et al. on TOFU forget10: lr 1e-5, β 0.1, retain weight 1, batch 32, 10 epochs (≈125 steps).
    "npo": _profiles(dict(steps=125, lr=1e-5, batch_size=32, beta=0.1, alpha=1.0, **_TOFU_10_EPOCHS),
                     dict(steps=100, lr=1e-3, beta=0.1, alpha=6.0)),
    # SimNPO on TOFU (open-unlearning): lr 1e-5, β 2.5, margin 0, forget weight 0.125, retain weight 1,
    # batch 32, 10 epochs (≈125 steps).
    "simnpo": _profiles(dict(steps=125, lr=1e-5, batch_size=32, beta=2.5, margin=0.0, gamma=0.125, alpha=1.0,
                             **_TOFU_10_EPOCHS),
                        dict(steps=100, lr=1e-3, beta=0.5, margin=2.0, gamma=1.0, alpha=3.0)),
    # WMDP RMU, Zephyr-7B: block 7, c = 6.5, α = 1200, lr 5e-5, batch 4, 150 batches, no clipping.
    "rmu": _profiles(dict(steps=150, lr=5e-5, batch_size=4, max_grad_norm=0.0, weight_decay=0.0, block=7,
                          steering_coeff=6.5, alpha=1200.0),
                     dict(steps=500, lr=3e-3, max_grad_norm=0.0, block=2, steering_coeff=50.0, alpha=1.0)),
    # Circuit breakers (Llama-3-8B / Mistral-7B): hidden states 10 and 20, LoRA rank 16, α_LoRA 16,
    # dropout 0.05, lr 1e-4, batch 16, 150 steps, lorra_alpha 10.
    "cb": _profiles(dict(steps=150, lr=1e-4, batch_size=16, weight_decay=0.0, alpha=10.0, target_hidden_states="10,20",
                         lora_rank=16, lora_alpha=16.0, lora_dropout=0.05, lora_modules="all-linear"),
                    # Full fine-tuning on the tiny world: in float32 a LoRA adapter starts the rerouting
                    # term at its maximum (cos = 1, gradient 0) and the growing retain term holds it
                    # there (reroute cos still 0.99999 after 200 steps at any lr tried); the reference
                    # escapes that point through bf16 rounding.
                    dict(steps=100, lr=3e-3, alpha=10.0, target_hidden_states="2", lora_rank=0, lora_alpha=16.0,
                         lora_dropout=0.0, lora_modules="all-linear")),
    # Targeted LAT, WMDP config (Zephyr-7B): adversary after block 7 (hidden state 8), ε = 2, 16 steps at
    # lr 5e-2, toward forget / away from retain; model: toward retain 1, away from forget 1, SFT 4 (normalised),
    # 4 model steps per adversary, AdamW re-created every step (torch default weight decay 0.01), lr 5e-5
    # constant, batch 4, 200 steps, clip 0.5, LoRA rank 64 on q, k, v, up, down of every block.
    "lat": _profiles(dict(steps=200, lr=5e-5, batch_size=4, max_grad_norm=0.5, alpha=4.0, gamma=1.0,
                          retain_adv_weight=1.0, model_steps=4, reset_optimizer=True, adv_hidden_states="8",
                          epsilon=2.0, adv_steps=16, adv_lr=5e-2, away_threshold=-5.0, lora_rank=64, lora_alpha=16.0,
                          lora_dropout=0.0, lora_modules="qkv-up-down"),
                     dict(steps=150, lr=1e-3, alpha=4.0, gamma=1.0, retain_adv_weight=1.0, model_steps=4,
                          reset_optimizer=True, adv_hidden_states="2", epsilon=2.0, adv_steps=6, adv_lr=0.1,
                          away_threshold=-5.0, lora_rank=0, lora_alpha=16.0, lora_dropout=0.0,
                          lora_modules="qkv-up-down")),
    # Deep-ignorance CB-LAT on the 6.9B GPT-NeoX: lr 2e-3, adversary lr 2e-3, 4 attack steps, remove 300,
    # retain 5, LoRA rank 16 (α 16, dropout 0.05) on peft's default modules (no target_modules given:
    # query_key_value for GPT-NeoX) of blocks 0..30, 2000 examples at effective batch 32 (≈62 steps);
    # its layers [5, 10, 15, 20, 25, 30] are hidden states for rerouting and blocks for the adversary;
    # one example per device and 32 accumulated (pdbs = 1), so the adversary is fit per example.
    "cb_lat": _profiles(dict(steps=62, lr=2e-3, batch_size=1, grad_accum=32, lr_decay="linear", alpha=5.0,
                             remove_coef=300.0,
                             target_hidden_states="5,10,15,20,25,30", adv_blocks="5,10,15,20,25,30", adv_steps=4,
                             adv_lr=2e-3, lora_rank=16, lora_alpha=16.0, lora_dropout=0.05, lora_modules="peft-default"),
                        # full fine-tuning for the reason given under cb (LoRA: hazard 0.78-0.93 at every
                        # setting tried, with benign damage)
                        dict(steps=200, lr=3e-3, alpha=10.0, remove_coef=10.0, target_hidden_states="2",
                             adv_blocks="0", adv_steps=4, adv_lr=2e-2, lora_rank=0, lora_alpha=16.0,
                             lora_dropout=0.0, lora_modules="peft-default")),
    # The control edit: a benign fine-tune on retain text only, stopped at a target size
    # (unlearn.py --match-dw-norm sets target_dw_norm); TOFU-family optimiser settings for reference.
    "control": _profiles(dict(steps=125, lr=1e-5, batch_size=32, target_dw_norm=0.0),
                         dict(steps=1000, lr=1e-3, target_dw_norm=0.0)),
}

METHOD_NAMES: tuple[str, ...] = tuple(PROFILES)
