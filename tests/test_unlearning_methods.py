"""Every unlearning method on a tiny model: finite loss, closed forms at step 0, exactly the
intended parameters changing, adversary sign, reproducibility, and the saved folder."""

import math

import pytest
import torch

from brittle.models import mlp_output_linears
from brittle.unlearning.adversary import ball_attack, steering_attack
from brittle.unlearning.data import DEFAULT_IDK, encode_texts, split_text
from brittle.unlearning.losses import masked_mse, mean_nll
from brittle.unlearning.registry import METHODS, Method, Trainer, UnlearnData, get_method
from brittle.unlearning.rmu import control_vector
from tests.tiny_models import TINY_TEXTS, make_tiny_model, save_tiny

SMALL = {"batch_size": 2, "max_length": 16}


@pytest.fixture(scope="module")
def tok():
    from brittle.tokenizer import train_word_tokenizer

    return train_word_tokenizer(TINY_TEXTS + DEFAULT_IDK)


@pytest.fixture(scope="module")
def data():
    forget, retain = TINY_TEXTS[:3], TINY_TEXTS[3:]
    return UnlearnData(forget, retain, [split_text(t) for t in forget], DEFAULT_IDK)


FAST = {"lat": {"adv_steps": 2}, "cb_lat": {"adv_steps": 2}}


def train(tok, data, name, steps=2, arch="gpt_neox", seed=0, **hp):
    model = make_tiny_model(arch, vocab_size=len(tok))
    method = get_method(name, "tiny", {**SMALL, **FAST.get(name, {}), "steps": steps, **hp})
    trainer = Trainer(model, tok, method, data, seed=seed, progress=False)
    log = trainer.run()
    return trainer.trained_model(), log


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list(METHODS))
def test_finite_and_reproducible(tok, data, name):
    model_a, log_a = train(tok, data, name)
    model_b, log_b = train(tok, data, name)
    assert torch.isfinite(torch.tensor(log_a["loss"].values)).all()
    sa, sb = state(model_a), state(model_b)
    assert sa.keys() == sb.keys() and not any("lora_" in k for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "same seed must give identical weights"
    base = state(make_tiny_model("gpt_neox", vocab_size=len(tok)))
    assert any(not torch.equal(sa[k], base[k]) for k in sa), "training changed nothing"


@pytest.mark.parametrize("name,beta", [("npo", 0.1), ("dpo", 0.5)])
def test_preference_loss_at_init_is_two_over_beta_ln2(tok, data, name, beta):
    _, log = train(tok, data, name, steps=1, beta=beta)
    col = "npo_loss" if name == "npo" else "dpo_loss"
    assert log[col].iloc[0] == pytest.approx(2 / beta * math.log(2), rel=1e-6)


@pytest.mark.parametrize("arch", ["gpt_neox", "llama"])
def test_rmu_changes_exactly_the_three_mlp_output_projections(tok, data, arch):
    model, _ = train(tok, data, "rmu", steps=2, arch=arch, block=2)
    base = make_tiny_model(arch, vocab_size=len(tok))
    expected = {n + ".weight" for _, n, _ in mlp_output_linears(base)}   # blocks 0, 1, 2 = ℓ-2..ℓ
    changed = {k for k, v in state(model).items() if not torch.equal(v, base.state_dict()[k])}
    assert changed == expected and len(changed) == 3
    assert all(("dense_4h_to_h" if arch == "gpt_neox" else "down_proj") in k for k in changed)


def test_rmu_reference_profile_changes_only_the_three_mlp_output_projections(tok, data):
    """The reference profile (WMDP's settings; block moved to 2 because the test model has 4 blocks)
    on GPT-NeoX: after training, exactly dense_4h_to_h of blocks 0, 1, 2 differ from the base."""
    model = make_tiny_model("gpt_neox", vocab_size=len(tok))
    method = get_method("rmu", "reference", {**SMALL, "steps": 2, "block": 2})
    trainer = Trainer(model, tok, method, data, seed=0, progress=False)
    trainer.run()
    base = make_tiny_model("gpt_neox", vocab_size=len(tok)).state_dict()
    changed = {k for k, v in state(trainer.trained_model()).items() if not torch.equal(v, base[k])}
    assert changed == {f"gpt_neox.layers.{b}.mlp.dense_4h_to_h.weight" for b in (0, 1, 2)}


def test_rmu_forget_term_at_step0_equals_mse_to_control_vector(tok, data):
    layer, coeff = 1, 7.0
    _, log = train(tok, data, "rmu", steps=1, block=layer, steering_coeff=coeff, batch_size=3)
    base = make_tiny_model("gpt_neox", vocab_size=len(tok))
    f = encode_texts(tok, data.forget_texts, 16)   # all three forget texts: the order does not matter
    h = base(**f.inputs, output_hidden_states=True).hidden_states[layer + 1]   # output of block 1
    expected = masked_mse(h, control_vector(32, coeff, seed=0), f.attention_mask)
    assert log["forget_mse"].iloc[0] == pytest.approx(expected.item(), rel=1e-5)
    assert log["retain_mse"].iloc[0] == 0.0
    u = control_vector(32, coeff, seed=0)
    assert u.norm().item() == pytest.approx(coeff, rel=1e-6) and (u >= 0).all()   # uniform draw, then scaled


def test_cb_lora_update_has_rank_at_most_r_and_spares_later_blocks(tok, data):
    r = 2
    # target hidden state 1 (block 0's output): adapters on blocks 0..1 as the reference, block 2 spared
    model, log = train(tok, data, "cb", steps=3, lora_rank=r, target_hidden_states="1", lr=1e-2)
    assert log["reroute_cos"].iloc[0] == pytest.approx(1.0, abs=1e-5) and log["retain_l2"].iloc[0] == 0.0
    base = state(make_tiny_model("gpt_neox", vocab_size=len(tok)))
    trained = state(model)
    changed = [k for k in base if not torch.equal(base[k], trained[k])]
    assert changed and all(".layers.0." in k or ".layers.1." in k for k in changed)
    assert {k.split(".")[-2] for k in changed} >= {"query_key_value", "dense_4h_to_h"}   # all-linear
    for k in changed:
        assert k.endswith(".weight") and trained[k].ndim == 2
        assert torch.linalg.matrix_rank((trained[k] - base[k]).double(), rtol=1e-6) <= r


def test_cb_full_finetune_option_trains_beyond_adapters(tok, data):
    model, _ = train(tok, data, "cb", steps=2, lora_rank=0, lr=1e-2)
    base = state(make_tiny_model("gpt_neox", vocab_size=len(tok)))
    trained = state(model)
    # LoRA never touches the embedding; full fine-tuning does (contrast with the test above).
    assert not torch.equal(trained["gpt_neox.embed_in.weight"], base["gpt_neox.embed_in.weight"])


class _FrozenProbe(Method):
    """Gradient ascent that checks, every step, that the frozen reference is the initial model."""

    name = "probe"
    forget_form = "texts"

    def __init__(self, hp, batch, expected):
        super().__init__(hp)
        self.batch, self.expected, self.max_diff = batch, expected, []

    def loss(self, trainer, step):
        ref = trainer.frozen_forward(self.batch.to(trainer.device)).logits
        self.max_diff.append((ref - self.expected).abs().max().item())
        f = trainer.texts(step.forget)
        return -mean_nll(trainer.forward(f).logits, f.labels), {}


def test_frozen_reference_is_the_initial_model_on_every_step(tok, data):
    batch = encode_texts(tok, data.retain, 16)
    model = make_tiny_model("gpt_neox", vocab_size=len(tok))
    with torch.no_grad():
        expected = model(**batch.inputs).logits
    probe = _FrozenProbe({"steps": 4, "lr": 1e-2, "batch_size": 2, "max_length": 16}, batch, expected)
    trainer = Trainer(model, tok, probe, data, progress=False)
    trainer.run()
    assert probe.max_diff == [0.0] * 4
    with torch.no_grad():
        moved = (trainer.model(**batch.inputs).logits - expected).abs().max().item()
    assert moved > 1e-3   # negative control: the trained model did move


def _trainer(tok, data):
    model = make_tiny_model("gpt_neox", vocab_size=len(tok))
    method = get_method("ga_simple", "tiny", SMALL)
    trainer = Trainer(model, tok, method, data, progress=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return trainer


def test_ball_adversary_makes_forget_text_more_likely_within_the_ball(tok, data):
    trainer = _trainer(tok, data)
    f = trainer.texts(data.forget_texts)
    attack = ball_attack(trainer, f, [2], epsilon=1.0, steps=8, lr=0.1)
    assert attack.nll_attacked < attack.nll_clean - 0.05, "the adversary must lower the forget NLL"
    norms = attack.deltas[2].norm(dim=-1)
    assert norms.max().item() <= 1.0 + 1e-5
    assert (norms[f.attention_mask == 0] == 0).all()
    tiny = ball_attack(trainer, f, [2], epsilon=1e-6, steps=8, lr=0.1)   # negative control
    assert abs(tiny.nll_attacked - tiny.nll_clean) < 1e-3


def test_steering_adversary_makes_forget_text_more_likely(tok, data):
    trainer = _trainer(tok, data)
    f = trainer.texts(data.forget_texts)
    _, _, before, after = steering_attack(trainer, f, [0, 1], steps=4, lr=0.05)
    assert after < before - 0.05


def test_unlearn_script_saves_a_reloadable_model_and_skips_when_done(tok, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    import unlearn

    base = save_tiny(make_tiny_model("gpt_neox", vocab_size=len(tok)), tmp_path / "base", tok)
    d = tmp_path / "data"
    d.mkdir()
    (d / "forget.txt").write_text("\n".join(TINY_TEXTS[:3]))
    (d / "retain.txt").write_text("\n".join(TINY_TEXTS[3:]))
    out = tmp_path / "out"
    argv = ["--method", "cb", "--model", str(base), "--data-dir", str(d), "--outdir", str(out),
            "--steps", "2", "--batch-size", "2", "--max-length", "16", "--no-progress"]
    assert unlearn.main(argv) == 0
    for name in ("model.safetensors", "tokenizer.json", "hyperparameters.json", "training_log.csv",
                 "training_loss.png", "run_meta.json", "_DONE.json"):
        assert (out / name).is_file(), name
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in reloaded.parameters()) == sum(p.numel() for p in make_tiny_model(
        "gpt_neox", vocab_size=len(tok)).parameters())
    marker = (out / "_DONE.json").stat().st_mtime_ns
    assert unlearn.main(argv) == 0 and (out / "_DONE.json").stat().st_mtime_ns == marker
    assert "[skip]" in capsys.readouterr().out
    assert unlearn.main(argv[:-1] + ["--beta", "0.3", "--no-progress"]) == 2   # cb has no beta
    assert "does not use --beta" in capsys.readouterr().err


def test_create_all_script_loops_over_preset_methods_and_skips_done(tok, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    base = save_tiny(make_tiny_model("gpt_neox", vocab_size=len(tok)), tmp_path / "base", tok)
    d = tmp_path / "data"
    d.mkdir()
    (d / "forget.txt").write_text("\n".join(TINY_TEXTS[:3]))
    (d / "retain.txt").write_text("\n".join(TINY_TEXTS[3:]))
    preset = tmp_path / "mini.env"
    preset.write_text(f'PRESET=mini\nBASE_MODEL={base}\nDATA_DIR={d}\nUNLEARN_METHODS="ga_simple"\nUNLEARN_PROFILE=tiny\n')
    script = Path(__file__).resolve().parents[1] / "create_all_unlearning_models.sh"
    cmd = ["bash", str(script), "--preset", str(preset), "--", "--steps", "1", "--batch-size", "2",
           "--max-length", "16", "--unlearned-dir", str(tmp_path / "models"), "--no-progress"]
    env = {**__import__("os").environ, "UNLEARN_LAUNCHER": sys.executable}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "models" / "base__ga_simple" / "_DONE.json").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and again.stdout.count("[skip]") == 1


@pytest.mark.parametrize("name", ["ga_simple", "grad_diff", "npo"])
def test_gradient_accumulation_equals_one_larger_batch(tok, name):
    """k micro-batches of b give the update of one batch of k·b (float64, equal-length texts so that
    every micro-batch mean is over the same number of tokens): same gradient norm, same weights."""
    texts = [f"the virus {w} lives in bats ." for w in ("vorax", "kelmor", "drusa", "pelix", "zeta", "omri")]
    data = UnlearnData(texts[:4] * 2, texts[2:] * 2, [split_text(t) for t in texts[:4] * 2], DEFAULT_IDK)

    def run(batch_size, grad_accum):
        model = make_tiny_model("gpt_neox", vocab_size=len(tok)).double()
        method = get_method(name, "tiny", {"batch_size": batch_size, "grad_accum": grad_accum, "max_length": 16,
                                           "steps": 3, "lr": 1e-3, "max_grad_norm": 0.0})
        trainer = Trainer(model, tok, method, data, seed=0, progress=False)
        log = trainer.run()
        return state(trainer.trained_model()), log

    one, log_one = run(4, 1)
    accumulated, log_acc = run(2, 2)
    torch.testing.assert_close(torch.tensor(log_acc["grad_norm"].values), torch.tensor(log_one["grad_norm"].values),
                               rtol=1e-10, atol=0)
    torch.testing.assert_close(torch.tensor(log_acc["loss"].values), torch.tensor(log_one["loss"].values),
                               rtol=1e-6, atol=1e-9)   # the logged loss is a float32 value
    for key in one:
        torch.testing.assert_close(accumulated[key], one[key], rtol=1e-9, atol=1e-12)
    # negative control: half the batch without accumulation is a different update
    half, log_half = run(2, 1)
    assert not torch.allclose(torch.tensor(log_half["grad_norm"].values), torch.tensor(log_one["grad_norm"].values))


@pytest.mark.parametrize("arch,allowed", [("gpt_neox", {"query_key_value"}), ("llama", {"q_proj", "v_proj"})])
def test_cb_lat_reference_lora_changes_only_peft_default_modules(tok, data, arch, allowed):
    """The reference profile of cb_lat (deep ignorance passes no target modules, so peft's default
    applies): after merging, only those matrices changed, in blocks 0..max(target)."""
    model = make_tiny_model(arch, vocab_size=len(tok))
    method = get_method("cb_lat", "reference", {**SMALL, "steps": 2, "adv_steps": 1, "lr": 1e-2,
                                                 "target_hidden_states": "1", "adv_blocks": "0"})
    trainer = Trainer(model, tok, method, data, seed=0, progress=False)
    trainer.run()
    trained = state(trainer.trained_model())
    base = state(make_tiny_model(arch, vocab_size=len(tok)))
    changed = [k for k in base if not torch.equal(base[k], trained[k])]
    assert changed and {k.split(".")[-2] for k in changed} <= allowed, changed
    assert all(".layers.0." in k or ".layers.1." in k for k in changed)


@pytest.mark.parametrize("gamma", [0.125, 1.0])
def test_simnpo_total_is_forget_weight_times_forget_term_plus_retain(tok, data, gamma):
    _, log = train(tok, data, "simnpo", steps=1, gamma=gamma, alpha=2.0)
    row = log.iloc[0]
    assert row["loss"] == pytest.approx(gamma * row["simnpo_loss"] + 2.0 * row["retain_nll"], rel=1e-6)


def test_cb_and_cb_lat_coefficient_schedules_closed_form(tok, data):
    """cb: c_s = α(1 − t/(2T)), c_r = α·t/(2T); cb_lat: c_s = remove_coef·(1 − s/4), c_r = α·s with
    s = t/T (the logged coefficients of every step against the formulas)."""
    steps, alpha, remove = 4, 3.0, 7.0
    _, log = train(tok, data, "cb", steps=steps, alpha=alpha, target_hidden_states="1")
    t = log["step"].to_numpy()
    assert log["coef_reroute"].tolist() == pytest.approx((alpha * (1 - t / (2 * steps))).tolist())
    assert log["coef_retain"].tolist() == pytest.approx((alpha * t / (2 * steps)).tolist())
    _, log = train(tok, data, "cb_lat", steps=steps, alpha=alpha, remove_coef=remove, target_hidden_states="1",
                   adv_blocks="0", adv_steps=1)
    s = log["step"].to_numpy() / steps
    assert log["coef_reroute"].tolist() == pytest.approx((remove * (1 - 0.25 * s)).tolist())
    assert log["coef_retain"].tolist() == pytest.approx((alpha * s).tolist())


@pytest.mark.parametrize("arch,allowed", [("gpt_neox", {"query_key_value", "dense_h_to_4h", "dense_4h_to_h"}),
                                          ("llama", {"q_proj", "k_proj", "v_proj", "up_proj", "down_proj"})])
def test_lat_reference_lora_adapts_q_k_v_up_down_of_every_block(tok, data, arch, allowed):
    """lat's reference LoRA (the targeted-LAT WMDP config's list): after merging, each changed matrix
    is one of those modules, changed with rank ≤ r, in every block; no embedding, norm, bias,
    attention output or gate changed. With rank 0 the embedding changes too (negative control)."""
    r = 2
    hp = {**SMALL, "steps": 2, "model_steps": 1, "adv_steps": 2, "lora_rank": r, "lora_alpha": 4.0, "lr": 1e-2,
          "adv_hidden_states": "1"}
    model = make_tiny_model(arch, vocab_size=len(tok))
    trainer = Trainer(model, tok, get_method("lat", "reference", hp), data, seed=0, progress=False)
    log = trainer.run()
    assert (log["adv_forget_nll_attacked"] < log["adv_forget_nll_clean"]).all()   # the adversary helps forget text
    base = state(make_tiny_model(arch, vocab_size=len(tok)))
    trained = state(trainer.trained_model())
    changed = [k for k in base if not torch.equal(base[k], trained[k])]
    assert changed and {k.split(".")[-2] for k in changed} == allowed, changed
    blocks = {int(k.split(".layers.")[1].split(".")[0]) for k in changed}
    assert blocks == set(range(model.config.num_hidden_layers))
    for k in changed:
        assert torch.linalg.matrix_rank((trained[k] - base[k]).double(), rtol=1e-6) <= r
    full, _ = train(tok, data, "lat", steps=2, arch=arch, lora_rank=0, lr=1e-2, adv_hidden_states="1", model_steps=1)
    embedding = next(k for k in base if "embed" in k)
    assert not torch.equal(state(full)[embedding], base[embedding])


def test_lat_model_loss_is_the_normalised_sum_of_its_three_terms_under_the_perturbation(tok, data):
    """At step 0: loss = (ρ·NLL(retain|δ) + γ·away(forget|δ) + α·NLL(retain)) / (ρ + γ + α); the
    two perturbed terms differ from the same terms under an adversary of radius 1e-9 (the clean
    loss, to rounding) while the SFT term does not."""
    hp = dict(steps=1, adv_hidden_states="1", lora_rank=0, model_steps=1, retain_adv_weight=2.0, gamma=3.0, alpha=5.0)
    _, attacked = train(tok, data, "lat", epsilon=2.0, **hp)
    _, clean = train(tok, data, "lat", epsilon=1e-9, **hp)
    row = attacked.iloc[0]
    expected = (2.0 * row["retain_nll_attacked"] + 3.0 * row["away_loss"] + 5.0 * row["retain_nll"]) / 10.0
    assert row["loss"] == pytest.approx(expected, rel=1e-6)
    assert row["retain_nll"] == pytest.approx(clean["retain_nll"].iloc[0], rel=1e-6)
    assert row["away_loss"] != pytest.approx(clean["away_loss"].iloc[0], rel=1e-3)
    assert row["retain_nll_attacked"] != pytest.approx(clean["retain_nll_attacked"].iloc[0], rel=1e-3)
    assert clean["retain_nll_attacked"].iloc[0] == pytest.approx(clean["retain_nll"].iloc[0], rel=1e-6)


def test_lat_fits_one_adversary_per_step_and_takes_model_steps_on_it(tok, data, monkeypatch):
    """model_steps = k: one adversary fit per step and k optimizer steps against it. With the
    optimizer re-created every step (reset_optimizer, the reference's choice), each of those steps
    is Adam's first, which moves every parameter with a gradient by ±lr (no clipping, no weight
    decay): after 2 steps of 1 the parameters that moved moved by a whole number of lr. With the
    state kept (negative control) the second update is not ±lr."""
    import brittle.unlearning.lat as lat

    fits = []
    real = lat.ball_attack
    monkeypatch.setattr(lat, "ball_attack", lambda *a, **k: fits.append(1) or real(*a, **k))
    _, log = train(tok, data, "lat", steps=2, model_steps=3, adv_hidden_states="1", lora_rank=0)
    assert len(fits) == 2 and len(log) == 2
    lr = 1e-3
    base = state(make_tiny_model("gpt_neox", vocab_size=len(tok)))

    def share_of_whole_lr_steps(reset):
        model, _ = train(tok, data, "lat", steps=2, model_steps=1, adv_hidden_states="1", lora_rank=0, lr=lr,
                         max_grad_norm=0.0, weight_decay=0.0, reset_optimizer=reset)
        trained = state(model)
        units = torch.cat([((trained[k] - base[k]) / lr).abs().flatten() for k in base if base[k].is_floating_point()])
        moved = units[units > 1e-3]
        return ((moved - moved.round()).abs() < 1e-2).float().mean().item()

    assert share_of_whole_lr_steps(True) > 0.95      # the rest: gradients near Adam's ε = 1e-8
    assert share_of_whole_lr_steps(False) < 0.5


def test_rmu_logs_the_activation_norm_its_coefficient_is_read_against(tok, data):
    """forget_act_norm at step 0 is the base model's mean ‖h_ℓ‖ over real forget tokens (an
    independent output_hidden_states computation); steering_over_norm = c / that norm."""
    _, log = train(tok, data, "rmu", steps=1, block=1, steering_coeff=5.0, batch_size=3)
    base = make_tiny_model("gpt_neox", vocab_size=len(tok))
    f = encode_texts(tok, data.forget_texts, SMALL["max_length"])
    with torch.no_grad():
        h = base(**f.inputs, output_hidden_states=True).hidden_states[2]          # output of block 1
    mask = f.attention_mask.bool()
    expected = h.norm(dim=-1)[mask].mean().item()
    assert log["forget_act_norm"].iloc[0] == pytest.approx(expected, rel=1e-5)
    assert log["steering_over_norm"].iloc[0] == pytest.approx(5.0 / expected, rel=1e-5)


def test_learning_rate_schedules_closed_form(tok, data):
    """Linear warm-up then linear decay to 0 (the TOFU-family reference schedule) and the tiny
    profile's constant rate, against their formulas at every step; constant warm-up-free training
    keeps the tiny profile's updates unchanged."""
    steps, warmup, lr = 10, 3, 1e-3
    _, log = train(tok, data, "ga_simple", steps=steps, lr=lr, warmup_steps=warmup, lr_decay="linear")
    t = log["step"].to_numpy()
    expected = [lr * k / warmup if k < warmup else lr * (steps - k) / (steps - warmup) for k in t]
    assert log["lr"].tolist() == pytest.approx(expected)
    _, log = train(tok, data, "ga_simple", steps=4, lr=lr)
    assert log["lr"].tolist() == pytest.approx([lr] * 4)
    from brittle.unlearning.profiles import PROFILES
    assert PROFILES["npo"]["reference"]["lr_decay"] == "linear" and PROFILES["npo"]["tiny"]["lr_decay"] == "constant"


def test_cb_lat_adversary_is_fit_per_micro_batch(tok, data, monkeypatch):
    """With batch 1 and k accumulated micro-batches (the reference profile's shape) the adversary is
    fit k times per step, each time on one example, as the reference's per-example adversary."""
    import brittle.unlearning.cb_lat as cb_lat

    sizes = []
    real = cb_lat.steering_attack

    def spy(trainer, batch, *args, **kwargs):
        sizes.append(batch.input_ids.shape[0])
        return real(trainer, batch, *args, **kwargs)

    monkeypatch.setattr(cb_lat, "steering_attack", spy)
    train(tok, data, "cb_lat", steps=2, batch_size=1, grad_accum=3, target_hidden_states="1", adv_blocks="0",
          adv_steps=1)
    assert sizes == [1] * 6
    from brittle.unlearning.profiles import PROFILES
    ref = PROFILES["cb_lat"]["reference"]
    assert ref["batch_size"] * ref["grad_accum"] == 32 and ref["batch_size"] == 1


def test_cb_retain_term_stops_at_the_last_target_block(tok, data):
    """As the reference, which truncates the model after the last target block: with full
    fine-tuning and target hidden state 1 (block 0's output), the retain term reads hidden states
    0..2, so block 2, the final norm and the head get no gradient from any term and stay exactly as
    they were (a retain term over every hidden state would move them), while blocks 0 and 1 change."""
    model, log = train(tok, data, "cb", steps=3, lora_rank=0, target_hidden_states="1", lr=1e-2)
    assert log["retain_l2"].iloc[1:].gt(0).all()
    base = state(make_tiny_model("gpt_neox", vocab_size=len(tok)))
    trained = state(model)
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    assert any(".layers.0." in k for k in changed) and any(".layers.1." in k for k in changed)
    assert not any(".layers.2." in k or "final_layer_norm" in k or "embed_out" in k for k in changed), sorted(changed)


def test_retain_pairs_train_on_their_answers_only(tok, data):
    """With retain (prompt, answer) pairs (TOFU's retain term), grad_diff's logged retain NLL at step
    0 is the base model's mean NLL over the answer tokens only (HF's loss with the prompt masked),
    not over whole texts (negative control)."""
    from brittle.unlearning.data import encode_pairs

    pairs = [split_text(t) for t in data.retain]
    paired = UnlearnData(data.forget_texts, pairs, data.forget_pairs, DEFAULT_IDK)
    model = make_tiny_model("gpt_neox", vocab_size=len(tok))
    method = get_method("grad_diff", "tiny", {**SMALL, "steps": 1, "batch_size": len(pairs)})   # one batch: all pairs
    log = Trainer(model, tok, method, paired, seed=0, progress=False).run()
    base = make_tiny_model("gpt_neox", vocab_size=len(tok))
    b = encode_pairs(tok, [p for p, _ in pairs], [a for _, a in pairs], SMALL["max_length"])
    t = encode_texts(tok, data.retain, SMALL["max_length"])
    with torch.no_grad():
        answers_only = base(**b.inputs, labels=b.labels).loss.item()
        whole = base(**t.inputs, labels=t.labels).loss.item()
    assert log["retain_nll"].iloc[0] == pytest.approx(answers_only, rel=1e-5)
    assert abs(whole - answers_only) > 1e-3


def test_control_stops_at_the_first_step_its_weight_change_reaches_the_target(tok, data):
    """The control edit's size: training ends at the first step after which ‖θ − θ₀‖₂ (computed
    here independently from the saved weights) is at least the target; the step before was below
    it (the logged dw_norm is the distance before each step's update). Target 0 runs every step."""
    full, log_full = train(tok, data, "control", steps=12, lr=1e-3)
    assert len(log_full) == 12
    target = float(log_full["dw_norm"].iloc[6])       # reached after step 5's update
    model, log = train(tok, data, "control", steps=12, lr=1e-3, target_dw_norm=target)
    base = state(make_tiny_model("gpt_neox", vocab_size=len(tok)))
    trained = state(model)
    distance = math.sqrt(sum(float(((trained[k].double() - base[k].double()) ** 2).sum()) for k in base))
    assert len(log) == 6 and distance >= target
    assert log["dw_norm"].iloc[-1] < target


def test_parameter_distance_of_models_to_the_base(tok, tmp_path):
    """unlearn.py --match-dw-norm's target is the median of these: ‖θ_m − θ_base‖₂ over all
    tensors, against planted shifts of one weight by 5, 1 and 2."""
    from brittle.weights import parameter_distance

    base = make_tiny_model("gpt_neox", vocab_size=len(tok))
    save_tiny(base, tmp_path / "base", tok)
    folders = []
    for size in (5.0, 1.0, 2.0):
        model = make_tiny_model("gpt_neox", vocab_size=len(tok))
        w = model.gpt_neox.embed_in.weight
        with torch.no_grad():
            w[0, 0] += size
        folders.append(str(save_tiny(model, tmp_path / f"m{size}", tok)))
    distances = [parameter_distance(str(tmp_path / "base"), f) for f in folders]
    assert distances == pytest.approx([5.0, 1.0, 2.0], rel=1e-6)


@pytest.mark.parametrize("target,verdict", [(1e-6, "reached"), (1e6, "NOT reached")])
def test_control_says_whether_it_reached_its_size(tok, data, target, verdict):
    method = get_method("control", "tiny", {**SMALL, "steps": 3, "target_dw_norm": target})
    log = Trainer(make_tiny_model("gpt_neox", vocab_size=len(tok)), tok, method, data, progress=False).run()
    assert len(log) == (1 if verdict == "reached" else 3)
    assert method.summary().endswith(verdict if verdict == "reached" else "NOT reached: raise --lr or --steps")
