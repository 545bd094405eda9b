"""The training loop shared by every unlearning method.

A method (see :class:`Method`) says which parameters train and what the loss of one step is;
the :class:`Trainer` does the rest the same way for all of them:

* float32 master weights: the model is held in float32 and, for ``compute_dtype=bfloat16``, only
  the forward passes run under autocast, so an update below bf16 resolution is not rounded away;
* the frozen reference (the model before unlearning) is evaluated on the *same* batch as the
  trained model, inside :meth:`Trainer.frozen`: for LoRA the adapters are switched off, otherwise
  the trainable tensors are swapped for copies of their initial values (memory: one copy of the
  trainable parameters, e.g. three matrices for RMU instead of a second model);
* seeded data order (one ``torch.Generator``), AdamW with an optional linear warm-up
  (``warmup_steps``) and a constant or linearly decaying rate (``lr_decay``), gradient clipping,
  a per-step log of every loss term, and a loud error if the loss becomes non-finite;
* gradient accumulation (``grad_accum`` = k): a step draws k × ``batch_size`` items, runs the
  method's loss on k micro-batches of ``batch_size`` and steps once on the mean of their
  gradients, so one GPU reaches a reference's effective batch (k micro-batches give the update of
  one batch k times larger when the micro-batch losses are means over equal token counts);
* adversarial methods: :meth:`Method.adversary` is fitted once per micro-batch at the start of a
  step and held fixed while the model takes ``model_steps`` optimizer steps on that batch (the
  targeted-LAT reference takes 4), optionally from a fresh optimizer state each step
  (``reset_optimizer``, as that reference re-creates its AdamW every step); the learning-rate
  schedule advances once per step;
* several GPUs through ``accelerate launch`` (data parallel; each rank takes a slice of one global
  batch), or one process over several GPUs with ``device_map`` for models that need it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from brittle.errors import UserError
from brittle.unlearning.data import QAFormat, Batch, batch_indices, encode_pairs, encode_texts


def lr_schedule(optimizer, hp: dict):
    """The learning-rate schedule of ``hp``: linear warm-up over ``warmup_steps``, then constant or
    linear decay to 0 at ``steps`` (transformers' ``get_{constant,linear}_schedule_with_warmup``)."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup, decay = int(hp.get("warmup_steps", 0)), hp.get("lr_decay", "constant")
    if warmup < 0 or decay not in ("constant", "linear"):
        raise UserError(f"--warmup-steps must be >= 0 and --lr-decay constant or linear (got {warmup}, {decay!r})")
    if decay == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, hp["steps"])
    return get_constant_schedule_with_warmup(optimizer, warmup)


@dataclass
class UnlearnData:
    """Everything a method may train on. ``forget_pairs`` are (prompt, answer) pairs;
    ``retain`` holds texts or, for pair-trained methods where the data has them, pairs;
    ``qa_format`` says how every pair is written (:data:`brittle.unlearning.data.QA_FORMATS`)."""

    forget_texts: list[str]
    retain: list
    forget_pairs: list[tuple[str, str]]
    idk: list[str]
    qa_format: QAFormat = QAFormat()


@dataclass
class StepData:
    """One step's share of the data: ``forget`` holds texts or (prompt, answer) pairs according
    to the method's ``forget_form``; ``idk`` one refusal per forget item."""

    index: int
    total: int
    forget: list
    retain: list
    idk: list[str]
    adversary: Any = None   # what Method.adversary fitted on this (micro-)batch


class Method:
    """Base class of an unlearning method. Subclasses set ``name`` (a key of
    :data:`brittle.unlearning.profiles.PROFILES`, which holds its defaults) and ``forget_form``
    ("texts" or "pairs"), and implement :meth:`loss`."""

    name: str = ""
    forget_form: str = "texts"

    def __init__(self, hp: dict[str, Any]):
        self.hp = hp

    def prepare(self, trainer: "Trainer") -> list[nn.Parameter]:
        """Set up (e.g. wrap with LoRA) and return the parameters to train. Default: all."""
        return [p for p in trainer.model.parameters()]

    def adversary(self, trainer: "Trainer", step: StepData) -> Any:
        """Fitted once per (micro-)batch before the model's steps on it and handed to :meth:`loss`
        as ``step.adversary`` (latent adversarial training). Default: nothing."""
        return None

    def loss(self, trainer: "Trainer", step: StepData) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def forget_batch(self, trainer: "Trainer", step: StepData) -> Batch:
        """The step's forget items tokenised: whole texts, or prompt + answer with the prompt
        masked out of the targets."""
        if self.forget_form == "pairs":
            prompts, answers = zip(*step.forget)
            return trainer.pairs(list(prompts), list(answers))
        return trainer.texts(step.forget)

    def finished(self, trainer: "Trainer") -> bool:
        """Checked after every step: True ends training early (the control edit's size target)."""
        return False

    def summary(self) -> str:
        """A line for the end of the run ("" for none): the control edit says whether it reached its size."""
        return ""

    def finalize(self, model: nn.Module) -> nn.Module:
        """The model to save (LoRA methods merge their adapters here)."""
        return model


class Trainer:
    """Runs ``method`` on ``model`` (float32 master weights) for ``hp["steps"]`` steps."""

    def __init__(self, model: nn.Module, tokenizer, method: Method, data: UnlearnData, seed: int = 0,
                 compute_dtype: torch.dtype = torch.float32, accelerator=None, tracker=None,
                 progress: bool = True, monitor=None):
        if compute_dtype == torch.float16:
            raise UserError("train in float32 or bfloat16 (float16 needs loss scaling that this loop does not do)")
        if any(p.dtype not in (torch.float32, torch.float64) for p in model.parameters()):
            raise UserError("load the model in float32: training keeps float32 master weights")
        self.model = model
        self.tokenizer = tokenizer
        self.method = method
        self.hp = method.hp
        self.data = data
        self.seed = seed
        self.compute_dtype = compute_dtype
        self.accelerator = accelerator
        self.tracker = tracker
        self.progress = progress
        self.rank = accelerator.process_index if accelerator else 0
        self.world = accelerator.num_processes if accelerator else 1
        self.monitor = monitor   # called after every step; True stops (calibration.Monitor)
        self.params: list[nn.Parameter] = []
        self._originals: list[tuple[nn.Parameter, torch.Tensor]] = []

    # -- helpers the methods call ------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def originals(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(parameter, its value before training) for every trained parameter (full fine-tuning)."""
        return self._originals

    @property
    def core(self) -> nn.Module:
        """The model without a DDP wrapper (peft wrapper kept)."""
        return self.accelerator.unwrap_model(self.model) if self.accelerator else self.model

    def texts(self, texts: list[str]) -> Batch:
        return encode_texts(self.tokenizer, texts, self.hp["max_length"]).to(self.device)

    def pairs(self, prompts: list[str], answers: list[str]) -> Batch:
        return encode_pairs(self.tokenizer, prompts, answers, self.hp["max_length"], self.data.qa_format).to(self.device)

    def retain_batch(self, items: list) -> Batch:
        """The step's retain items tokenised: texts, or (prompt, answer) pairs (answer targets only)."""
        if items and isinstance(items[0], tuple):
            prompts, answers = zip(*items)
            return self.pairs(list(prompts), list(answers))
        return self.texts(items)

    def autocast(self):
        if self.compute_dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    def forward(self, batch: Batch, **kwargs):
        """Forward pass of the model being trained (autocast when training in bf16)."""
        with self.autocast():
            return self.model(**batch.inputs, use_cache=False, **kwargs)

    def inner_forward(self, batch: Batch, **kwargs):
        """Forward pass of the current model outside any data-parallel wrapper: for inner loops
        (the latent adversary) whose gradients must not enter the wrapper's gradient sync."""
        with self.autocast():
            return self.core(**batch.inputs, use_cache=False, **kwargs)

    @contextmanager
    def frozen(self) -> Iterator[nn.Module]:
        """The model as it was before unlearning, in eval mode and without gradients."""
        core = self.core
        was_training = core.training
        core.eval()
        try:
            with torch.no_grad():
                if hasattr(core, "disable_adapter"):
                    with core.disable_adapter():
                        yield core
                else:
                    current = [p.data for p, _ in self._originals]
                    for p, orig in self._originals:
                        p.data = orig
                    try:
                        yield core
                    finally:
                        for (p, _), cur in zip(self._originals, current):
                            p.data = cur
        finally:
            core.train(was_training)

    def frozen_forward(self, batch: Batch, **kwargs):
        with self.frozen() as ref, self.autocast():
            return ref(**batch.inputs, use_cache=False, **kwargs)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> pd.DataFrame:
        """Train; return the per-step log (one row per step: ``step``, ``loss``, each loss term,
        ``seconds``)."""
        hp = self.hp
        torch.manual_seed(self.seed)  # LoRA initialisation and anything else drawn in prepare()
        params = self.method.prepare(self)
        self.params = params
        for p in self.core.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        if not hasattr(self.core, "disable_adapter"):
            self._originals = [(p, p.detach().clone()) for p in params]
        optimizer = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.0))
        scheduler = lr_schedule(optimizer, hp)
        if self.accelerator:
            self.model, optimizer = self.accelerator.prepare(self.model, optimizer)
        self.model.train()

        gen = torch.Generator().manual_seed(self.seed)
        forget_items = self.data.forget_pairs if self.method.forget_form == "pairs" else self.data.forget_texts
        accum = max(1, int(hp.get("grad_accum", 1)))
        per_step = hp["batch_size"] * accum
        forget_iter = batch_indices(len(forget_items), per_step, gen, self.rank, self.world)
        retain_iter = batch_indices(len(self.data.retain), per_step, gen, self.rank, self.world)
        idk_gen = torch.Generator().manual_seed(self.seed + 1)
        model_steps = max(1, int(hp.get("model_steps", 1)))
        reset_optimizer = bool(hp.get("reset_optimizer", False))

        rows = []
        t0 = time.time()
        bar = tqdm(range(hp["steps"]), desc=f"unlearn {self.method.name}",
                   disable=not self.progress or self.rank != 0)
        for i in bar:
            f_idx, r_idx = next(forget_iter), next(retain_iter)
            idk = [self.data.idk[j] for j in torch.randint(len(self.data.idk), (len(f_idx),), generator=idk_gen)]
            step = StepData(i, hp["steps"], [forget_items[j] for j in f_idx],
                            [self.data.retain[j] for j in r_idx], idk)
            micros = self._micro_steps(step, accum)
            for micro in micros:
                micro.adversary = self.method.adversary(self, micro)
            if reset_optimizer:
                optimizer.state.clear()   # AdamW's moments and step counts, as a fresh optimizer
            for _ in range(model_steps):
                total, sums, grad_norm = self._optimizer_step(i, micros, optimizer, params, accum)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            row = {"step": i, "loss": total, **sums, "grad_norm": grad_norm, "lr": lr,
                   "seconds": round(time.time() - t0, 3)}
            rows.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if self.tracker is not None:
                self.tracker.log({k: v for k, v in row.items() if k != "step"}, step=i)
            if self.method.finished(self) or (self.monitor is not None and self.monitor(self, i)):
                break
        self._originals = []
        return pd.DataFrame(rows)

    def _optimizer_step(self, index: int, micros: list[StepData], optimizer, params, accum: int):
        """One optimizer step on the mean gradient of ``micros``; returns (loss, loss terms, grad norm)."""
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        total, sums = 0.0, {}
        for micro in micros:
            loss, parts = self.method.loss(self, micro)
            if not torch.isfinite(loss):
                raise UserError(f"{self.method.name}: loss became {loss.item()} at step {index} (lr {lr:g}); lower --lr")
            if self.accelerator:
                self.accelerator.backward(loss / accum)
            else:
                (loss / accum).backward()
            total += loss.item() / accum
            for key, value in parts.items():   # loss terms: the mean over micro-batches
                sums[key] = sums.get(key, 0.0) + float(value) / accum
        grad_norm = self._clip(params)
        optimizer.step()
        return total, sums, grad_norm

    @staticmethod
    def _micro_steps(step: StepData, accum: int) -> list[StepData]:
        """``step`` cut into ``accum`` consecutive micro-batches (the same step index for all)."""
        if accum == 1:
            return [step]
        n = len(step.forget)
        cuts = [round(k * n / accum) for k in range(accum + 1)]
        r_cuts = [round(k * len(step.retain) / accum) for k in range(accum + 1)]
        return [StepData(step.index, step.total, step.forget[a:b], step.retain[c:d], step.idk[a:b])
                for a, b, c, d in zip(cuts, cuts[1:], r_cuts, r_cuts[1:])]

    def _clip(self, params: list[nn.Parameter]) -> float:
        max_norm = self.hp.get("max_grad_norm", 0.0) or float("inf")
        if self.accelerator:
            norm = self.accelerator.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return float(norm)

    def trained_model(self) -> nn.Module:
        """The trained model, unwrapped and finalised (LoRA merged), on its device."""
        return self.method.finalize(self.core)
