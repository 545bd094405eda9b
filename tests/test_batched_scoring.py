"""brittle.batched_scoring: planned, batched log-likelihoods against the unbatched HF forward
(one pair at a time, no padding), and the plan's sharing of forward sequences."""

import pytest
import torch

from brittle import evaluation as ev
from brittle.batched_scoring import encode_pair, plan_pairs, run_plan
from brittle.padding import pad_id
from tests.tiny_models import make_tiny_model

CONTEXTS = ["the pathogen vorax is carried by", "paris is the capital of",
            "question : what is the host of the pathogen ? answer :"]
CONTINUATIONS = [" bats", " the city", " a", " b", " one two three", " france"]


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("gpt_neox", seed=3)


def unbatched(model, tok, context, continuation, max_length=None):
    """The oracle: one sequence, no padding, HF forward, float64 log-softmax of every position."""
    ctx, cont = encode_pair(tok, context, continuation)
    seq = ctx + cont
    if max_length and len(seq) > max_length:
        seq = seq[-max_length:]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
    return sum(float(logp[t - 1, seq[t]]) for t in range(len(seq) - len(cont), len(seq))), len(cont)


@pytest.mark.parametrize("batch_size,max_length", [(1, None), (3, None), (64, None), (4, 6)])
def test_batched_scores_equal_one_at_a_time_forward(model, tiny_tokenizer, batch_size, max_length):
    pairs = [(c, k) for c in CONTEXTS for k in CONTINUATIONS]
    got = ev.continuation_logprobs(model, tiny_tokenizer, pairs, batch_size=batch_size, max_length=max_length)
    for (context, continuation), (ll, n) in zip(pairs, got):
        want, n_want = unbatched(model, tiny_tokenizer, context, continuation, max_length)
        assert n == n_want and ll == pytest.approx(want, abs=1e-5)


def test_mcqa_letters_share_one_forward_sequence_and_keep_their_scores(model, tiny_tokenizer):
    questions = [{"id": str(i), "question": c, "choices": ["x", "y", "z", "w"], "answer": 0}
                 for i, c in enumerate(CONTEXTS)]
    prompts = [ev.mcqa_prompt(q) for q in questions]
    pairs = [(p, f" {letter}") for p in prompts for letter in ev.LETTERS]
    plan = plan_pairs(tiny_tokenizer, pairs)
    # each letter is one token here, so the four pairs of a prompt need only the prompt itself
    assert all(n == 1 for n in plan.n_tokens)
    assert len(plan.inputs) == len(prompts)
    frame = ev.mcqa_scores(model, tiny_tokenizer, questions, batch_size=2, progress=False)
    for q, prompt, (_, row) in zip(questions, prompts, frame.iterrows()):
        want = [unbatched(model, tiny_tokenizer, prompt, f" {letter}")[0] for letter in ev.LETTERS]
        assert [row[f"loglik_{j}"] for j in range(4)] == pytest.approx(want, abs=1e-5)


def test_plan_reads_every_pair_from_a_sequence_that_starts_with_its_prefix(tiny_tokenizer):
    """Invariant: the row a scored token is read from holds the pair's tokens up to that token, and
    no kept row is a prefix of another (nothing runs twice)."""
    pairs = [(c, k) for c in CONTEXTS for k in CONTINUATIONS] + [(CONTEXTS[0], " bats")]  # a duplicate
    plan = plan_pairs(tiny_tokenizer, pairs)
    for p, (context, continuation) in enumerate(pairs):
        ctx, cont = encode_pair(tiny_tokenizer, context, continuation)
        seq = ctx + cont
        mine = plan.pair == p
        assert plan.target[mine].tolist() == cont
        for row, pos in zip(plan.row[mine], plan.position[mine]):
            assert plan.inputs[row][: pos + 1] == seq[: pos + 1]
    for i, a in enumerate(plan.inputs):
        assert not any(j != i and b[: len(a)] == a for j, b in enumerate(plan.inputs))
    assert len(plan.inputs) < len(pairs)
    lengths = [len(s) for s in plan.inputs]
    assert lengths == sorted(lengths, reverse=True)


def test_run_plan_matches_on_padding_heavy_batches(model, tiny_tokenizer):
    """A short sequence batched with a long one (much right padding) scores as it does alone."""
    pairs = [("a", " b"), (CONTEXTS[2] + " " + CONTEXTS[0], " bats")]
    plan = plan_pairs(tiny_tokenizer, pairs)
    together = run_plan(model, plan, pad_id(tiny_tokenizer), batch_size=2, device=torch.device("cpu"))
    alone = run_plan(model, plan, pad_id(tiny_tokenizer), batch_size=1, device=torch.device("cpu"))
    assert together == pytest.approx(alone, abs=1e-5)
    assert together[0] == pytest.approx(unbatched(model, tiny_tokenizer, "a", " b")[0], abs=1e-5)
