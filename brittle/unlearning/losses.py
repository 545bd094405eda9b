"""Loss functions of the unlearning methods: pure tensor functions, no model inside.

Conventions. ``logits``: (B, T, V) float; ``labels``: (B, T) int64 with -100 on positions that do
not count (padding, and the prompt of a prompt/answer pair). Position t of ``logits`` predicts
token t+1, so every function shifts by one, as HF causal LMs do. Hidden states ``h``: (L, B, T, D)
or (B, T, D); ``mask``: (B, T) bool/0-1 attention mask (1 = real token). Everything is computed
in float32 whatever the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits[:, :-1].float(), labels[:, 1:]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label_t | tokens < t): (B, T-1) float32, and the (B, T-1) bool mask of
    positions that count (zeros elsewhere)."""
    lg, lb = _shift(logits, labels)
    valid = lb != IGNORE
    logp = -F.cross_entropy(lg.transpose(1, 2), lb.clamp_min(0), reduction="none")
    return logp * valid, valid


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(y|x) summed over the counted tokens of each sequence: (B,) float32.

    The sequence-level quantity of DPO, NPO and SimNPO (the reference ``get_batch_loss`` is its
    negative)."""
    logp, _ = token_logprobs(logits, labels)
    return logp.sum(-1)


def answer_lengths(labels: torch.Tensor) -> torch.Tensor:
    """|y|: number of counted (predicted) tokens per sequence, (B,) float32."""
    return (labels[:, 1:] != IGNORE).sum(-1).float()


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over all counted tokens of the batch (HF's ``outputs.loss``)."""
    logp, valid = token_logprobs(logits, labels)
    return -logp.sum() / valid.sum().clamp_min(1)


def npo_loss(logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024, eq. 3): −(2/β)·mean log σ(−β·(log πθ(y|x) − log π_ref(y|x))).

    ``logp``, ``logp_ref``: (B,) sequence-summed log-probabilities. Equals (2/β)·ln 2 when
    πθ = π_ref; decreases towards 0 as the model makes the forget answers less likely."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - logp_ref)).mean()


def simnpo_loss(logp: torch.Tensor, lengths: torch.Tensor, beta: float, margin: float) -> torch.Tensor:
    """SimNPO (Fan et al. 2024, eq. 4): −(2/β)·mean log σ(−(β/|y|)·log πθ(y|x) − γ).

    Reference-free and length-normalised; ``margin`` is γ. (The reference code subtracts the
    margin before multiplying by β, i.e. its δ equals γ/β here; with γ = 0 both agree.)"""
    return -(2.0 / beta) * F.logsigmoid(-beta * logp / lengths.clamp_min(1) - margin).mean()


def dpo_loss(logp_win: torch.Tensor, logp_lose: torch.Tensor, ref_win: torch.Tensor,
             ref_lose: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO as used for IdkDPO in TOFU (Maini et al. 2024; Rafailov et al. 2023):
    −(2/β)·mean log σ(β·[(log πθ − log π_ref)(y_win) − (log πθ − log π_ref)(y_lose)]).

    All inputs (B,) sequence-summed log-probabilities. Equals (2/β)·ln 2 when πθ = π_ref."""
    margin = (logp_win - ref_win) - (logp_lose - ref_lose)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


def retain_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(π_ref ‖ πθ) of the next-token distributions, averaged over the counted positions.

    TOFU's ``KL`` retain term; padding is excluded here (the reference averages over all rows)."""
    lg, lb = _shift(logits, labels)
    ref = ref_logits[:, :-1].float()
    valid = lb != IGNORE
    logq = lg.log_softmax(-1)[valid]
    logp = ref.log_softmax(-1)[valid]
    return (logp.exp() * (logp - logq)).sum(-1).mean()


def log_one_minus_p_loss(logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """"Away" loss of targeted LAT (Sheshadri et al. 2024, from HarmBench): mean over counted
    tokens of −log(1 − p(label)), where tokens already below ``threshold`` in log p count 0.

    Computed stably as logsumexp over the other logits minus logsumexp over all."""
    lg, lb = _shift(logits, labels)
    valid = lb != IGNORE
    idx = lb.clamp_min(0).unsqueeze(-1)
    lse_all = lg.logsumexp(-1)
    log_p = lg.gather(-1, idx).squeeze(-1) - lse_all
    others = lg.scatter(-1, idx, float("-inf"))
    log_1mp = others.logsumexp(-1) - lse_all
    counted = valid & (log_p >= threshold)
    return -(log_1mp * counted).sum() / valid.sum().clamp_min(1)


def masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real tokens and all hidden dimensions.

    ``h``: (B, T, D); ``target``: broadcastable to it (RMU's c·u is (1, 1, D)); ``mask``: (B, T).
    Equals ``F.mse_loss`` restricted to unpadded positions."""
    m = mask.to(torch.float32).unsqueeze(-1)
    sq = (h.float() - target.float()) ** 2 * m
    return sq.sum() / (m.sum() * h.shape[-1]).clamp_min(1)


def reroute_loss(h: torch.Tensor, h_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Circuit-breaker representation rerouting (Zou et al. 2024, Alg. 1):
    mean over layers and real tokens of ReLU(cos(h, h_ref)).

    ``h``, ``h_ref``: (L, B, T, D); ``mask``: (B, T). Zero once every representation is
    orthogonal (or opposite) to the frozen model's."""
    cos = F.cosine_similarity(h.float(), h_ref.float(), dim=-1, eps=1e-8)      # (L, B, T)
    m = mask.to(torch.float32).unsqueeze(0).expand_as(cos)
    return (torch.relu(cos) * m).sum() / m.sum().clamp_min(1)


def retain_l2(h: torch.Tensor, h_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Circuit-breaker retain term: mean over layers and real tokens of ‖h − h_ref‖₂.

    ``h``, ``h_ref``: (L, B, T, D); ``mask``: (B, T)."""
    dist = (h.float() - h_ref.float()).norm(dim=-1)                            # (L, B, T)
    m = mask.to(torch.float32).unsqueeze(0).expand_as(dist)
    return (dist * m).sum() / m.sum().clamp_min(1)
