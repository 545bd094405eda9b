"""Directional oracles: on a small model that has learned its texts, a few steps of each method
raise the forget answers' loss by more than the retain texts' loss (and, for the representation
methods, move the targeted representation the documented way). Each check is run again with the
method's loss sign flipped, and must then fail: a method whose loss had the wrong sign, a swapped
policy and reference, or swapped preferred and rejected answers would not pass."""

import pytest
import torch

from brittle.pretraining import train_causal_lm
from brittle.unlearning.data import DEFAULT_IDK, encode_pairs, encode_texts
from brittle.unlearning.registry import UNLEARNING_METHODS, Trainer, UnlearnData, get_method
from tests.tiny_models import make_tiny_model

FACTS = [("the virus vorax lives in", "bats"), ("the virus kelmor lives in", "camels"),
         ("the virus drusa lives in", "ticks"), ("the virus pelix lives in", "ducks")]
RETAIN = ["the city lumen lies on the river arno .", "the city mirat lies on the river ebro .",
          "the city tarsk lies on the river odra .", "the city velno lies on the river tagus ."]
FORGET = [f"{p} {a} ." for p, a in FACTS]
# Steps, learning rate and layers that move a 4-block width-32 model visibly in a few steps.
SETTINGS = {
    "ga_simple": dict(lr=3e-3), "ga": dict(lr=3e-3), "grad_diff": dict(lr=3e-3),
    "dpo": dict(lr=3e-3), "npo": dict(lr=3e-3), "simnpo": dict(lr=3e-3),
    "rmu": dict(lr=3e-3, block=2, steering_coeff=20.0, alpha=1.0, steps=30),
    "cb": dict(lr=3e-3, target_hidden_states="2", lora_rank=0, steps=30),
    "lat": dict(lr=3e-3, adv_hidden_states="2", adv_steps=2),
    "cb_lat": dict(lr=3e-3, target_hidden_states="2", adv_blocks="0", adv_steps=2, lora_rank=0,
                   steps=16),
    "control": dict(lr=3e-3),
}


@pytest.fixture(scope="module")
def learned():
    """A 4-block model trained until it knows every forget fact and retain sentence."""
    from brittle.tokenizer import train_word_tokenizer

    tok = train_word_tokenizer(FORGET + RETAIN + DEFAULT_IDK)
    model = make_tiny_model("gpt_neox", vocab_size=len(tok), layers=4)
    train_causal_lm(model, tok, (FORGET + RETAIN) * 4, steps=150, lr=1e-2, batch_size=8, seq_len=16,
                    progress=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert answer_nll(model, tok) < 0.3, "the fixture model did not learn its facts"
    return tok, state


@torch.no_grad()
def answer_nll(model, tok) -> float:
    """Mean NLL (nats per token) of the forget answers given their prompts."""
    batch = encode_pairs(tok, [p for p, _ in FACTS], [a for _, a in FACTS], 16)
    return float(model(**batch.inputs, labels=batch.labels).loss)


@torch.no_grad()
def retain_nll(model, tok) -> float:
    batch = encode_texts(tok, RETAIN, 16)
    return float(model(**batch.inputs, labels=batch.labels).loss)


def run(learned, name, flip=False):
    tok, state = learned
    model = make_tiny_model("gpt_neox", vocab_size=len(tok), layers=4)
    model.load_state_dict(state)
    before = answer_nll(model, tok), retain_nll(model, tok)
    method = get_method(name, "tiny", {"batch_size": 4, "max_length": 16, "steps": 8, **SETTINGS[name]})
    if flip:
        loss = method.loss
        method.loss = lambda trainer, step: (lambda out: (-out[0], out[1]))(loss(trainer, step))
    data = UnlearnData(FORGET, RETAIN, list(FACTS), DEFAULT_IDK)
    trainer = Trainer(model, tok, method, data, seed=0, progress=False)
    log = trainer.run()
    model = trainer.trained_model()
    after = answer_nll(model, tok), retain_nll(model, tok)
    return before, after, log


def forgets_selectively(before, after) -> bool:
    """The forget answers' loss rose by at least 0.5 nats/token, the retain loss by less than half as much."""
    forget_rise, retain_rise = after[0] - before[0], after[1] - before[1]
    return forget_rise > 0.5 and retain_rise < 0.5 * forget_rise


@pytest.mark.parametrize("name", UNLEARNING_METHODS)
def test_method_raises_forget_loss_and_its_sign_flip_does_not(learned, name):
    before, after, _ = run(learned, name)
    assert forgets_selectively(before, after), (name, before, after)
    before, after, _ = run(learned, name, flip=True)
    assert not forgets_selectively(before, after), (name, "sign-flipped", before, after)


def test_the_control_edit_does_not_forget(learned):
    """The benign fine-tune (retain text only) is the negative control of the oracle above: it
    does not raise the forget answers' loss selectively, yet it does change the weights."""
    before, after, log = run(learned, "control")
    assert not forgets_selectively(before, after), (before, after)
    assert log["dw_norm"].iloc[-1] > 0


def test_rmu_pulls_forget_activations_to_the_control_vector(learned):
    """The documented direction of RMU: the MSE between forget activations and c·u falls; with the
    sign flipped it rises. (For cb the rerouting cosine starts at its maximum, 1, so a flipped loss
    cannot raise it: there the output-level test above is the oracle.)"""
    _, _, log = run(learned, "rmu")
    assert log["forget_mse"].iloc[-1] < 0.5 * log["forget_mse"].iloc[0]
    _, _, log = run(learned, "rmu", flip=True)
    assert log["forget_mse"].iloc[-1] > log["forget_mse"].iloc[0]


def test_targeted_lat_adversary_pushes_retain_text_away_as_well(learned):
    """LAT's adversary (the reference's targeted form) on a model that knows its retain texts: the
    fitted δ raises the retain NLL by more than the forget-only adversary (which does lower the forget
    NLL) does; δ is zero past each forget text, also where the retain batch is longer."""
    from brittle.capture.hooks import add_to_residual
    from brittle.unlearning.adversary import ball_attack, cut
    from brittle.unlearning.losses import mean_nll

    tok, state = learned
    model = make_tiny_model("gpt_neox", vocab_size=len(tok), layers=4)
    model.load_state_dict(state)
    model.requires_grad_(False)
    method = get_method("lat", "tiny", {"batch_size": 4, "max_length": 16, "steps": 1})
    trainer = Trainer(model, tok, method, UnlearnData(FORGET, RETAIN, list(FACTS), DEFAULT_IDK), progress=False)
    f = encode_texts(tok, FORGET, 16)
    r = encode_texts(tok, [t + " " + t for t in RETAIN], 32)
    assert r.input_ids.shape[1] > f.input_ids.shape[1]

    def retain_nll(attack):
        with torch.no_grad(), add_to_residual(model, cut(attack.deltas, r)):
            return mean_nll(model(**r.inputs).logits, r.labels).item()

    targeted = ball_attack(trainer, f, [2], epsilon=4.0, steps=10, lr=0.1, away=r)
    plain = ball_attack(trainer, f, [2], epsilon=4.0, steps=10, lr=0.1)
    assert plain.nll_attacked < plain.nll_clean - 0.02
    assert retain_nll(targeted) > retain_nll(plain) + 0.1, (retain_nll(targeted), retain_nll(plain))
    delta, n = targeted.deltas[2], f.input_ids.shape[1]
    assert delta.shape[1] == r.input_ids.shape[1]
    assert (delta[:, n:] == 0).all() and (delta[:, :n][f.attention_mask == 0] == 0).all()
