"""layerwise_forgetting.py, brittle.layerwise, brittle.layerwise_tables and brittle.capture.prompts on tiny
in-process models."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial import distance as scipy_distance

import layerwise_forgetting
from brittle import layerwise
from brittle.capture.prompts import build_inputs, capture
from brittle.stats import percentile_ci, resample_counts
from tests.tiny_models import TINY_TEXTS, make_tiny_model, save_tiny

CHAT_TEMPLATE = ("{% for m in messages %}question : {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}answer :{% endif %}")
QUESTIONS = [t.rstrip(" .") for t in TINY_TEXTS[:6]]


# ---------------------------------------------------------------- pure functions

def test_distances_match_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3, 16)), rng.normal(size=(4, 3, 16))
    d = layerwise.distances(a, b)
    expected_cos = [[scipy_distance.cosine(a[i, j], b[i, j]) for j in range(3)] for i in range(4)]
    expected_l2 = [[scipy_distance.euclidean(a[i, j], b[i, j]) for j in range(3)] for i in range(4)]
    np.testing.assert_allclose(d["cosine"], expected_cos, rtol=1e-12)
    np.testing.assert_allclose(d["l2"], expected_l2, rtol=1e-12)
    assert np.all(layerwise.cosine_distance(a, a) == 0)  # exactly, not rounding noise
    np.testing.assert_allclose(layerwise.cosine_distance(a, -a), 2.0)


def test_ratio_regions_and_patterns_closed_form():
    np.testing.assert_allclose(layerwise.forgetting_ratio([1.0, 3.0, 0.0, 0.0], [3.0, 1.0, 2.0, 0.0]),
                               [0.75, 0.25, 1.0, 0.5])
    # thirds of the block outputs; the embeddings (hidden state 0) belong to none
    assert layerwise.layer_regions(4) == {"early": [1], "middle": [2], "late": [3]}
    assert layerwise.layer_regions(7) == {"early": [1, 2], "middle": [3, 4], "late": [5, 6]}
    assert layerwise.layer_regions(17) == {"early": list(range(1, 6)), "middle": list(range(6, 11)),
                                           "late": list(range(11, 17))}
    with pytest.raises(ValueError):
        layerwise.layer_regions(3)  # two blocks cannot form three thirds
    assert layerwise.classify(0.9, 0.8) == "true_unlearning"
    assert layerwise.classify(0.1, 0.8) == "obfuscation"
    assert layerwise.classify(0.1, 0.2) == "no_effect"
    assert layerwise.classify(0.9, 0.2) == "mixed"
    assert layerwise.classify(0.5, 0.9) == "mixed"  # exactly 0.5 is on neither side
    assert list(layerwise.classify([0.9, 0.1], [0.8, 0.8])) == ["true_unlearning", "obfuscation"]


def test_region_ratios_model_and_question_level():
    # Two questions, three layers; per-layer ratio of means vs per-question ratio of region means.
    d_ref = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 4.0]])
    d_ft = np.array([[3.0, 2.0, 4.0], [1.0, 6.0, 0.0]])
    regions = {"early": [0], "middle": [1], "late": [2]}
    assert layerwise.region_ratios(d_ref, d_ft, regions) == pytest.approx(
        {"early": 0.5, "middle": 4 / 6, "late": 0.5})
    q = layerwise.question_region_ratios(d_ref, d_ft, regions)
    np.testing.assert_allclose(q["early"], [0.75, 0.25])
    np.testing.assert_allclose(q["late"], [1.0, 0.0])


def test_bootstrap_equals_explicit_resampling():
    rng = np.random.default_rng(1)
    d_ref, d_ft = rng.uniform(size=(12, 6)), rng.uniform(size=(12, 6))
    regions = layerwise.layer_regions(6)
    got = layerwise.bootstrap_region_ratios(d_ref, d_ft, regions, n_boot=200, seed=3)
    # Oracle: materialise each replicate's resampled questions and rerun the point estimate.
    reps = []
    for counts in resample_counts(12, 200, 3).astype(int):
        idx = np.repeat(np.arange(12), counts)
        r = layerwise.region_ratios(d_ref[idx], d_ft[idx], regions)
        reps.append([r[k] for k in regions])
    low, high = percentile_ci(np.array(reps))
    for i, name in enumerate(regions):
        assert got[name] == pytest.approx((low[i], high[i]), abs=1e-12)
    # Constant distances across questions: every replicate equals the estimate.
    flat = layerwise.bootstrap_region_ratios(np.ones((5, 6)), np.full((5, 6), 3.0), regions, 50, 0)
    assert all(v == pytest.approx((0.75, 0.75)) for v in flat.values())


# ---------------------------------------------------------------- hidden-state capture

@pytest.mark.parametrize("arch", ["gpt_neox", "llama"])
@pytest.mark.parametrize("position", ["last", "answer_mean"])
def test_capture_equals_unbatched_output_hidden_states(tiny_tokenizer, arch, position):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    model = make_tiny_model(arch, seed=4, vocab_size=len(tok))
    answers = ["five days", "the lungs", "bats", "a", "b c d", "berlin"]
    inputs = build_inputs(tok, QUESTIONS, answers, position=position)
    got = capture(model, inputs, tok.pad_token_id, batch_size=4)  # ragged batches, right padding
    assert got.shape == (len(QUESTIONS), 4, 32)
    for i, question in enumerate(QUESTIONS):
        text = tok.apply_chat_template([{"role": "user", "content": f"Answer briefly: {question}"}],
                                       tokenize=False, add_generation_prompt=True)
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        ids = prompt + (tok(answers[i], add_special_tokens=False)["input_ids"] if position == "answer_mean" else [])
        with torch.no_grad():
            hs = torch.stack(model(torch.tensor([ids]), output_hidden_states=True).hidden_states)[:, 0]
        expected = hs[:, -1] if position == "last" else hs[:, len(prompt):].mean(1)
        torch.testing.assert_close(got[i], expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the script on planted models

def _planted_world(root, tok):
    """Fine-tuned F, reference R and three unlearned models with known answers.

    R's blocks 3-5 add a large fixed vector v through their MLP output bias, so from hidden state 4
    on, any model running those blocks points along v. ``obfuscated`` is F with blocks 3-5 taken
    from R: identical to F up to hidden state 3, close to R afterwards (knowledge kept early,
    output side replaced). ``forgot`` is R itself, ``unchanged`` is F itself.
    """
    f = make_tiny_model("gpt_neox", seed=1, vocab_size=len(tok), layers=6)
    r = make_tiny_model("gpt_neox", seed=2, vocab_size=len(tok), layers=6)
    v = torch.randn(32, generator=torch.Generator().manual_seed(9)) * 20
    with torch.no_grad():
        for i in (3, 4, 5):
            r.gpt_neox.layers[i].mlp.dense_4h_to_h.bias.copy_(v)
    obfuscated = copy.deepcopy(f)
    for i in (3, 4, 5):
        obfuscated.gpt_neox.layers[i].load_state_dict(r.gpt_neox.layers[i].state_dict())
    paths = {}
    for name, model in [("finetuned", f), ("reference", r), ("obfuscated", obfuscated), ("forgot", r),
                        ("unchanged", f)]:
        paths[name] = str(save_tiny(model, root / name, tok))
    return paths


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory, request):
    tok = copy.deepcopy(request.getfixturevalue("tiny_tokenizer"))
    tok.chat_template = CHAT_TEMPLATE
    root = tmp_path_factory.mktemp("layerwise")
    paths = _planted_world(root, tok)
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": q, "choices": list("abcd"), "answer": i % 4}) + "\n"
                                 for i, q in enumerate(QUESTIONS)))
    out = root / "out"
    argv = ["--reference", paths["reference"], "--finetuned", paths["finetuned"],
            "--unlearned", paths["obfuscated"], paths["forgot"], paths["unchanged"],
            "--questions", str(questions), "--template", "Answer briefly: {question}",
            "--n-bootstrap", "100", "--output-root", str(out), "--batch-size", "4"]
    assert layerwise_forgetting.main(argv) == 0
    return {"paths": paths, "out": out, "argv": argv, "tok": tok}


def _folder(planted_run, name):
    """Each unlearned model's results go to its own folder."""
    return planted_run["out"] / name / "layerwise_forgetting"


def _table(planted_run, file):
    return pd.concat([pd.read_csv(_folder(planted_run, n) / file) for n in ("obfuscated", "forgot", "unchanged")])


def test_planted_patterns(planted_run):
    models = {name: json.loads((_folder(planted_run, name) / "results.json").read_text())
              for name in ("obfuscated", "forgot", "unchanged")}
    for results in models.values():
        assert results["n_hidden_states"] == 7 and results["chat_template"] is True
        assert results["regions"] == {"early": [1, 2], "middle": [3, 4], "late": [5, 6]}
        assert results["pattern_supported_by_ci"] is True
    assert models["obfuscated"]["pattern"] == "obfuscation"
    assert models["forgot"]["pattern"] == "true_unlearning"
    assert models["unchanged"]["pattern"] == "no_effect"
    assert models["obfuscated"]["pattern_distribution"]["obfuscation"] == len(QUESTIONS)
    # The obfuscated model equals F exactly before the planted blocks and leans to R after them.
    per_state = _table(planted_run, "per_hidden_state.csv")
    obf = per_state[per_state["unlearned_model"] == "obfuscated"].set_index("hidden_state")
    assert list(obf["closer_to"]) == ["finetuned"] * 4 + ["reference"] * 3
    assert (obf.loc[:3, "cosine_to_finetuned_max"] == 0).all()
    assert (obf.loc[4:, "forgetting_ratio"] > 0.9).all()
    # The baseline is the same for every unlearned model and equals the 'unchanged' model's d_ref.
    unchanged = per_state[per_state["unlearned_model"] == "unchanged"].set_index("hidden_state")
    np.testing.assert_allclose(unchanged["cosine_finetuned_to_reference_mean"], unchanged["cosine_to_reference_mean"])
    regions = _table(planted_run, "regions.csv")
    assert len(regions) == 9 and set(regions["region"]) == {"early", "middle", "late"}
    assert ((regions["ci_low"] <= regions["forgetting_ratio"] + 1e-12)
            & (regions["forgetting_ratio"] <= regions["ci_high"] + 1e-12)).all()
    assert len(_table(planted_run, "per_question.csv")) == 3 * len(QUESTIONS)
    for name in ("obfuscated", "forgot", "unchanged"):
        assert (_folder(planted_run, name) / f"layerwise_{name}.png").stat().st_size > 10_000


def test_change_confined_to_the_first_block_shows_in_the_early_third(planted_run, tmp_path):
    """The early third is made of block outputs: a change to the first block (block 0, whose output
    is hidden state 1) alone moves it,
    while the embeddings (hidden state 0, in no third) stay identical. Negative control: the
    unchanged model's early ratio is exactly 0."""
    from transformers import AutoModelForCausalLM

    paths, tok = planted_run["paths"], planted_run["tok"]
    block1 = AutoModelForCausalLM.from_pretrained(paths["finetuned"])
    with torch.no_grad():
        block1.gpt_neox.layers[0].mlp.dense_4h_to_h.bias.add_(
            torch.randn(32, generator=torch.Generator().manual_seed(4)) * 5)
    block1_path = str(save_tiny(block1, tmp_path / "block1", tok))
    argv = planted_run["argv"][:]
    start = argv.index("--unlearned")
    argv[start + 1:start + 4] = [block1_path]
    argv[argv.index("--output-root") + 1] = str(tmp_path / "out")
    assert layerwise_forgetting.main(argv) == 0
    folder = tmp_path / "out" / "block1" / "layerwise_forgetting"
    per_state = pd.read_csv(folder / "per_hidden_state.csv").set_index("hidden_state")
    assert per_state.loc[0, "forgetting_ratio"] == 0                 # embeddings untouched
    assert (per_state.loc[1:, "forgetting_ratio"] > 0).all()
    early = pd.read_csv(folder / "regions.csv").set_index("region").loc["early"]
    assert early["forgetting_ratio"] > 0.05 and early["ci_low"] > 0
    control = pd.read_csv(_folder(planted_run, "unchanged") / "regions.csv").set_index("region")
    assert control.loc["early", "forgetting_ratio"] == 0


def test_distances_equal_direct_computation(planted_run):
    """distances.csv against HF output_hidden_states of each model run alone, one question at a time."""
    from transformers import AutoModelForCausalLM

    paths, tok = planted_run["paths"], planted_run["tok"]
    table = pd.read_csv(_folder(planted_run, "obfuscated") / "distances.csv")
    states = {}
    for name in ("reference", "finetuned", "obfuscated"):
        model = AutoModelForCausalLM.from_pretrained(paths[name]).eval()
        rows = []
        for q in QUESTIONS:
            text = tok.apply_chat_template([{"role": "user", "content": f"Answer briefly: {q}"}],
                                           tokenize=False, add_generation_prompt=True)
            ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                rows.append(torch.stack([h[0, -1] for h in model(ids, output_hidden_states=True).hidden_states]))
        states[name] = torch.stack(rows)                        # (questions, hidden states, d)
    obf = table[table["unlearned_model"] == "obfuscated"].sort_values(["question_idx", "hidden_state"])
    for other, column in (("reference", "to_reference"), ("finetuned", "to_finetuned")):
        cos = 1 - torch.nn.functional.cosine_similarity(states["obfuscated"], states[other], dim=-1)
        l2 = (states["obfuscated"] - states[other]).norm(dim=-1)
        np.testing.assert_allclose(obf[f"cosine_{column}"], cos.flatten().numpy(), atol=2e-6)
        np.testing.assert_allclose(obf[f"l2_{column}"], l2.flatten().numpy(), rtol=1e-5, atol=1e-5)


def test_skip_and_force(planted_run, capsys):
    done = _folder(planted_run, "forgot") / "_DONE.json"
    stamp = done.stat().st_mtime_ns
    assert layerwise_forgetting.main(planted_run["argv"]) == 0
    assert capsys.readouterr().out.count("[skip]") == 3 and done.stat().st_mtime_ns == stamp
    # Analysing one model again with other settings rewrites that model's folder, not the others'.
    one = planted_run["argv"][:]
    one += ["--max-questions", "2"]                              # different params: recompute
    start = one.index("--unlearned")
    one[start + 1:start + 4] = [planted_run["paths"]["forgot"]]
    assert layerwise_forgetting.main(one) == 0
    assert len(pd.read_csv(_folder(planted_run, "forgot") / "per_question.csv")) == 2
    assert len(pd.read_csv(_folder(planted_run, "obfuscated") / "per_question.csv")) == len(QUESTIONS)


def test_bad_input_is_one_line_error(planted_run, tiny_tokenizer, tmp_path, capsys):
    paths = planted_run["paths"]
    llama = save_tiny(make_tiny_model("llama", vocab_size=len(tiny_tokenizer)), tmp_path / "llama", tiny_tokenizer)
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question": "who ?", "answer": "me"}) + "\n")
    base = ["--reference", paths["reference"], "--finetuned", paths["finetuned"], "--questions", str(q),
            "--outdir", str(tmp_path / "o"), "--n-bootstrap", "0"]
    assert layerwise_forgetting.main(base + ["--unlearned", str(llama)]) == 2          # 3 vs 6 layers
    with pytest.raises(SystemExit):                              # argparse: one line, exit 2
        layerwise_forgetting.main(base + ["--unlearned", paths["forgot"], "--max-questions", "x"])
    assert layerwise_forgetting.main(base[:-4] + ["--questions", str(tmp_path / "none.jsonl"),
                                                  "--unlearned", paths["forgot"]]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "Traceback" not in err


def test_tofu_questions_from_a_local_copy(shared_data):
    """--tofu-dir reads TOFU through brittle.data.tofu; checked on the genuine offline copy."""
    import argparse

    tofu = shared_data / "tofu"
    args = argparse.Namespace(questions=None, tofu_split="forget10", tofu_dir=str(tofu), max_questions=3)
    questions, answers, source = layerwise_forgetting.read_prompts(args)
    rows = [json.loads(line) for line in (tofu / "forget10.jsonl").read_text().splitlines()[:3]]
    assert questions == [r["question"] for r in rows] and answers == [r["answer"] for r in rows]
    assert source == "TOFU forget10"
    args.max_questions = None
    assert len(layerwise_forgetting.read_prompts(args)[0]) == 400


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        layerwise_forgetting.main(["--help"])
    assert exc.value.code == 0
    assert "uv run layerwise_forgetting.py" in capsys.readouterr().out
