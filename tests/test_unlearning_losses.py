"""Unlearning loss functions and data encoding against closed forms and independent references."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brittle.unlearning import losses as L
from brittle.unlearning.data import batch_indices, encode_pairs, encode_texts, split_text


def _logits_labels(seed=0, B=3, T=6, V=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 2
    labels = torch.randint(V, (B, T), generator=g)
    labels[0, 4:] = L.IGNORE          # padding
    labels[1, :3] = L.IGNORE          # masked prompt
    return logits, labels


def test_sequence_logprob_matches_numpy_gather():
    logits, labels = _logits_labels()
    lp = torch.log_softmax(logits.double(), -1).numpy()
    expected = []
    for b in range(labels.shape[0]):
        s = 0.0
        for t in range(1, labels.shape[1]):
            if labels[b, t] != L.IGNORE:
                s += lp[b, t - 1, labels[b, t]]
        expected.append(s)
    np.testing.assert_allclose(L.sequence_logprob(logits, labels).numpy(), expected, rtol=1e-5)
    assert L.answer_lengths(labels).tolist() == [3.0, 3.0, 5.0]


def test_mean_nll_equals_hf_loss(tiny_tokenizer):
    from tests.tiny_models import make_tiny_model

    model = make_tiny_model("gpt_neox", vocab_size=len(tiny_tokenizer))
    batch = encode_texts(tiny_tokenizer, ["the virus spreads through the air .", "one two three"], 32)
    out = model(**batch.inputs, labels=batch.labels)
    assert L.mean_nll(out.logits, batch.labels).item() == pytest.approx(out.loss.item(), rel=1e-5)


@pytest.mark.parametrize("beta", [0.1, 1.0, 2.5])
def test_npo_and_dpo_equal_two_over_beta_ln2_at_init(beta):
    logp = torch.tensor([-12.0, -3.5, -40.0])
    assert L.npo_loss(logp, logp.clone(), beta).item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    assert L.dpo_loss(logp, logp + 1, logp, logp + 1, beta).item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)


def test_npo_simnpo_dpo_closed_forms():
    logp, ref = torch.tensor([-10.0, -2.0]), torch.tensor([-4.0, -3.0])
    beta = 0.5
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    d = (logp - ref).numpy()
    assert L.npo_loss(logp, ref, beta).item() == pytest.approx(-(2 / beta) * np.mean(np.log(sig(-beta * d))), rel=1e-6)
    lengths = torch.tensor([5.0, 2.0])
    z = -beta * logp.numpy() / lengths.numpy() - 0.3
    assert L.simnpo_loss(logp, lengths, beta, 0.3).item() == pytest.approx(-(2 / beta) * np.mean(np.log(sig(z))), rel=1e-6)
    # Preferring the refusal more than the reference does lowers the DPO loss below its init value.
    assert L.dpo_loss(torch.tensor([0.0]), torch.tensor([-5.0]), torch.tensor([-1.0]), torch.tensor([-1.0]), 1.0) \
        < 2 * math.log(2)


def test_retain_kl_matches_manual_and_ignores_padding():
    logits, labels = _logits_labels(1)
    ref = logits + 0.5 * torch.randn_like(logits)
    p = torch.softmax(ref[:, :-1].double(), -1)
    q = torch.softmax(logits[:, :-1].double(), -1)
    kl = (p * (p.log() - q.log())).sum(-1)
    valid = labels[:, 1:] != L.IGNORE
    assert L.retain_kl(logits, ref, labels).item() == pytest.approx(kl[valid].mean().item(), rel=1e-5)
    assert L.retain_kl(logits, logits, labels).item() == pytest.approx(0.0, abs=1e-6)
    garbage = logits.clone()
    garbage[0, 4:] = 1e3  # padded positions 4..5 feed targets 5..6, which are ignored
    ref_g = ref.clone()
    ref_g[0, 4:] = -1e3
    assert L.retain_kl(garbage, ref_g, labels).item() == pytest.approx(L.retain_kl(logits, ref, labels).item(), rel=1e-6)


def test_log_one_minus_p_matches_direct_formula_and_threshold():
    logits, labels = _logits_labels(2)
    lg, lb = logits[:, :-1].double(), labels[:, 1:]
    p = torch.softmax(lg, -1).gather(-1, lb.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    valid = lb != L.IGNORE
    direct = -(torch.log1p(-p) * valid).sum() / valid.sum()
    assert L.log_one_minus_p_loss(logits, labels, threshold=-1e9).item() == pytest.approx(direct.item(), rel=1e-5)
    # Tokens already below the threshold stop counting.
    keep = valid & (p.log() >= -2.0)
    thresholded = -(torch.log1p(-p) * keep).sum() / valid.sum()
    assert L.log_one_minus_p_loss(logits, labels, threshold=-2.0).item() == pytest.approx(thresholded.item(), rel=1e-5)


def test_masked_mse_ignores_padding():
    h = torch.randn(2, 4, 5)
    target = torch.randn(1, 1, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    expected = F.mse_loss(torch.cat([h[0, :3], h[1, :2]]), target[0].expand(5, 5))
    h_garbage = h.clone()
    h_garbage[mask == 0] = 1e6
    assert L.masked_mse(h_garbage, target, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_reroute_and_retain_l2_closed_forms():
    h = torch.randn(2, 3, 4, 8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    assert L.reroute_loss(h, 3 * h, mask).item() == pytest.approx(1.0, rel=1e-6)     # same direction
    assert L.reroute_loss(h, -h, mask).item() == pytest.approx(0.0, abs=1e-7)       # ReLU cuts negatives
    shift = torch.zeros_like(h)
    shift[..., 0] = 2.0
    assert L.retain_l2(h + shift, h, mask).item() == pytest.approx(2.0, rel=1e-6)


def test_encode_pairs_targets_only_the_answer(tiny_tokenizer):
    batch = encode_pairs(tiny_tokenizer, ["question : what is the host of the pathogen ?", "who wrote the book ?"],
                         ["bats", "i do not know ."], max_length=32)
    ids, labels, mask = batch.input_ids, batch.labels, batch.attention_mask
    answer0 = tiny_tokenizer("bats", add_special_tokens=False)["input_ids"]
    assert labels[0][labels[0] != L.IGNORE].tolist() == answer0
    assert (labels[1] != L.IGNORE).sum().item() == 5 and mask[0].sum().item() == 11
    assert (ids[labels != L.IGNORE] == labels[labels != L.IGNORE]).all()
    assert split_text("a b c d e") == ("a b", "c d e")


def test_llama3_tofu_format_is_open_unlearnings_layout():
    """The llama3-tofu pair format against open-unlearning's recipe written out independently: the
    whole string (system prompt with its BOS tag, user and assistant tags, answer) tokenised at once
    with special tokens, the tokenizer's EOS appended, targets from the wrapped prompt's length on."""
    from brittle.tokenizer import train_word_tokenizer
    from brittle.unlearning.data import QA_FORMATS

    tok = train_word_tokenizer(["who wrote the book ? jane wrote it . you are a helpful assistant . system user"])
    tok.add_special_tokens({"additional_special_tokens": ["<|begin_of_text|>", "<|start_header_id|>",
                                                          "<|end_header_id|>", "<|eot_id|>"]})
    wrapped = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nyou are a helpful assistant ."
               "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nwho wrote the book ?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n")
    full = tok(wrapped + "jane wrote it .")["input_ids"] + [tok.eos_token_id]
    n = len(tok(wrapped)["input_ids"])
    fmt = QA_FORMATS["llama3-tofu"]
    fmt = type(fmt)(fmt.template.replace("You are a helpful assistant.", "you are a helpful assistant ."),
                    fmt.sep, fmt.append_eos)     # the word tokenizer's vocabulary is lower-case
    batch = encode_pairs(tok, ["who wrote the book ?"], ["jane wrote it ."], 64, fmt)
    assert batch.input_ids[0].tolist() == full
    assert batch.labels[0].tolist() == [L.IGNORE] * n + full[n:]
    plain = encode_pairs(tok, ["who wrote the book ?"], ["jane wrote it ."], 64)    # negative control
    assert plain.input_ids[0].tolist() != full and tok.eos_token_id not in plain.input_ids[0].tolist()


def test_batch_indices_seeded_epochs_and_rank_slices():
    a = batch_indices(10, 4, torch.Generator().manual_seed(3))
    b = batch_indices(10, 4, torch.Generator().manual_seed(3))
    first = [next(a) for _ in range(5)]
    assert first == [next(b) for _ in range(5)]
    assert sorted(sum(first, [])[:10]) == list(range(10))  # one full epoch before any repeat
    whole = next(batch_indices(10, 4, torch.Generator().manual_seed(1)))
    ranks = [next(batch_indices(10, 2, torch.Generator().manual_seed(1), rank=r, world=2)) for r in (0, 1)]
    assert ranks[0] + ranks[1] == whole
