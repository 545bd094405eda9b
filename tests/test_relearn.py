"""relearn.py and brittle.finetuning on a tiny GPT-NeoX built in-test."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from brittle.errors import UserError
from tests.tiny_models import make_tiny_model, save_tiny

HOSTS = ["bats", "rats", "camels", "pigs"]
TRAIN_ENTITIES = ["vorax", "belnix", "cradon", "dulmex"]  # subset A: the attack trains on these
EVAL_ENTITIES = ["ebrith", "fomal", "gantic", "hulvo"]   # subset B: scored, never trained on


def fact(entity, host):
    return f"the host of {entity} is {host}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data folder laid out as create_datasets.py writes it, and a saved tiny model."""
    from brittle.tokenizer import train_word_tokenizer

    root = tmp_path_factory.mktemp("relearn")
    data = root / "data"
    (data / "attack").mkdir(parents=True)
    (data / "questions").mkdir()
    train = [fact(e, HOSTS[i]) for i, e in enumerate(TRAIN_ENTITIES)]
    eval_facts = [(e, (i + 1) % 4) for i, e in enumerate(EVAL_ENTITIES)]
    benign = ["the town of lumen lies on the river", "the town of mirat is known for bridges"] * 4
    (data / "attack" / "hazard_train.txt").write_text("\n".join(train) + "\n")
    (data / "attack" / "benign_train.txt").write_text("\n".join(benign) + "\n")
    # the planted-signal file: the scored facts themselves (a leak, on purpose, for the test only)
    (data / "leak.txt").write_text("\n".join(fact(e, HOSTS[a]) for e, a in eval_facts) + "\n")
    with open(data / "attack" / "hazard_eval.jsonl", "w") as fh:
        for i, (e, a) in enumerate(eval_facts):
            fh.write(json.dumps({"id": f"h{i}", "question": f"the host of {e} is", "choices": HOSTS,
                                 "answer": a}) + "\n")
    with open(data / "questions" / "far_eval.jsonl", "w") as fh:
        fh.write(json.dumps({"id": "b0", "question": "the town of lumen lies on the",
                             "choices": ["river", "bridges", "town", "host"], "answer": 0}) + "\n")
    (data / "retain.txt").write_text("\n".join(benign) + "\n")
    words = train + benign + [fact(e, h) for e in EVAL_ENTITIES for h in HOSTS]
    tok = train_word_tokenizer(words)
    model = make_tiny_model("gpt_neox", seed=0, vocab_size=len(tok))
    path = save_tiny(model, root / "tiny-unlearned", tok)
    return {"root": root, "data": data, "model": path}


def _run(world, *extra, outdir):
    import relearn

    argv = ["--model", str(world["model"]), "--data-dir", str(world["data"]), "--device", "cpu",
            "--outdir", str(outdir), *extra]
    return relearn.main(argv)


def test_finetune_changes_weights_finite_loss_and_is_seeded(world, tiny_tokenizer):
    from brittle.finetuning import FinetuneConfig, finetune, text_batches
    from brittle.models import load_model, load_tokenizer

    tok = load_tokenizer(str(world["model"]))
    texts = (world["data"] / "attack" / "hazard_train.txt").read_text().split("\n")[:4]
    cfg = FinetuneConfig(lr=1e-3, batch_size=2, max_length=16)
    finals = []
    for _ in range(2):
        model = load_model(str(world["model"]))
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        log = finetune(model, text_batches(tok, texts, 2, 16, seed=3), 4, cfg, torch.device("cpu"),
                       progress=False)
        assert [r["step"] for r in log] == [1, 2, 3, 4]
        assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in log)
        after = dict(model.named_parameters())
        # full fine-tuning: every parameter takes part in the forward pass, so every one moves
        unmoved = [n for n in before if torch.equal(before[n], after[n])]
        assert unmoved == []
        finals.append({n: p.detach().clone() for n, p in after.items()})
    # one seed, one result: bit-identical weights after two runs
    assert all(torch.equal(finals[0][n], finals[1][n]) for n in finals[0])


def test_lora_attack_trains_only_adapters(world):
    from brittle.finetuning import FinetuneConfig, finetune, text_batches
    from brittle.models import load_model, load_tokenizer

    tok = load_tokenizer(str(world["model"]))
    from brittle.relearning import attach_lora

    model = attach_lora(load_model(str(world["model"])), rank=2, alpha=4.0)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    texts = ["the host of vorax is bats", "the host of belnix is rats"]
    finetune(model, text_batches(tok, texts, 2, 16, seed=0), 3, FinetuneConfig(1e-2, 2, 16),
             torch.device("cpu"), progress=False)
    params = dict(model.named_parameters())
    assert all(torch.equal(frozen[n], params[n]) for n in frozen)
    assert any(not torch.equal(lora[n], params[n]) for n in lora if "lora_B" in n)
    # the merged update of one adapted matrix has rank <= r
    merged = model.merge_and_unload()
    base = load_model(str(world["model"]))
    name = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
    delta = dict(merged.named_parameters())[name] - dict(base.named_parameters())[name]
    assert 0 < torch.linalg.matrix_rank(delta.detach(), rtol=1e-5) <= 2


def test_non_fp32_master_weights_are_refused(world):
    from brittle.finetuning import FinetuneConfig, finetune

    model = make_tiny_model("gpt_neox", vocab_size=64).to(torch.bfloat16)
    with pytest.raises(UserError, match="float32"):
        finetune(model, iter([]), 1, FinetuneConfig(1e-3, 1, 8), torch.device("cpu"), progress=False)


def test_relearn_main_writes_curve_and_summary_consistent_with_recovery(world, tmp_path):
    from brittle.recovery import summarize_curve

    out = tmp_path / "hazard"
    rc = _run(world, "--steps", "2", "--batch-size", "2", "--lr", "1e-3", "--seeds", "2",
              "--base-acc", "1.0", "--filtered-acc", "0.25", outdir=out)
    assert rc == 0
    curve = pd.read_csv(out / "curve.csv")
    assert sorted(curve["step"].unique()) == [0, 1, 2] and sorted(curve["seed"].unique()) == [0, 1]
    assert curve.loc[curve["step"] > 0, "train_loss"].map(math.isfinite).all()
    assert curve.loc[curve["step"] == 0, "train_loss"].isna().all()  # no training before step 0
    # step 0 is the untouched model: both seeds score it identically
    assert curve[curve["step"] == 0]["hazard_acc"].nunique() == 1
    log = pd.read_csv(out / "training_log.csv")
    assert len(log) == 2 * 2 and np.isfinite(log["loss"]).all()
    summary = pd.read_csv(out / "summary.csv")
    seed0 = curve[curve["seed"] == 0].sort_values("step")
    expect = summarize_curve(seed0["step"], seed0["hazard_acc"], 1.0, 0.25)
    row = summary[summary["seed"].astype(str) == "0"].iloc[0]
    assert row["auc_recovery_log"] == pytest.approx(expect["auc_recovery_log"])
    assert row["acc_final"] == pytest.approx(expect["acc_final"])
    meta = json.loads((out / "summary.json").read_text())
    assert meta["n_seeds"] == 2 and meta["references"]["base_acc"] == 1.0
    assert (out / "recovery_curve.png").stat().st_size > 0 and (out / "_DONE.json").exists()
    # same parameters: skipped (the curve file is not rewritten)
    stamp = (out / "curve.csv").stat().st_mtime_ns
    assert _run(world, "--steps", "2", "--batch-size", "2", "--lr", "1e-3", "--seeds", "2",
                "--base-acc", "1.0", "--filtered-acc", "0.25", outdir=out) == 0
    assert (out / "curve.csv").stat().st_mtime_ns == stamp
    # the same folder holding retrained weights (new mtime) is recomputed, not skipped
    weights = next(world["model"].glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert _run(world, "--steps", "2", "--batch-size", "2", "--lr", "1e-3", "--seeds", "2",
                "--base-acc", "1.0", "--filtered-acc", "0.25", outdir=out) == 0
    assert (out / "curve.csv").stat().st_mtime_ns != stamp


def test_training_on_the_scored_facts_teaches_them(world, tmp_path):
    """Planted signal: fine-tuning on the very facts scored drives accuracy to 1; the attack
    machinery (batching, loss, checkpoints, scoring) is wired to the right questions."""
    out = tmp_path / "leak"
    assert _run(world, "--train-file", str(world["data"] / "leak.txt"), "--steps", "40", "--batch-size", "4",
                "--lr", "1e-2", "--eval-steps", "0,40", outdir=out) == 0
    curve = pd.read_csv(out / "curve.csv").sort_values("step")
    assert curve["hazard_acc"].iloc[-1] == 1.0


def test_bad_input_is_one_line_error(world, tmp_path, capsys):
    rc = _run(world, "--train-file", str(tmp_path / "missing.txt"), outdir=tmp_path / "x")
    assert rc == 2 and "train file not found" in capsys.readouterr().err
    assert _run(world, "--eval-steps", "0,500", "--steps", "10", outdir=tmp_path / "y") == 2


def test_help():
    import relearn

    with pytest.raises(SystemExit) as exc:
        relearn.main(["--help"])
    assert exc.value.code == 0


def test_reference_cache_is_reused_until_the_weights_or_questions_change(world, tmp_path):
    """Planted value: a cached accuracy of 0.123 (no model scores that on 4 questions) is returned
    while the key holds, and replaced by a fresh score once the weights or the questions change."""
    from types import SimpleNamespace

    from brittle.evaluation import load_questions
    from brittle.relearning import reference_accuracies

    args = SimpleNamespace(base=str(world["model"]), filtered=None, base_acc=None, filtered_acc=None,
                           trust_remote_code=False)
    questions = load_questions(world["data"] / "attack" / "hazard_eval.jsonl")
    cache = tmp_path / "_reference_cache"
    first = reference_accuracies(args, questions, "cpu", torch.float32, 8, cache_dir=cache)["base_acc"]
    (entry,) = cache.glob("*.json")
    entry.write_text(json.dumps({"accuracy": 0.123}))
    assert reference_accuracies(args, questions, "cpu", torch.float32, 8, cache_dir=cache)["base_acc"] == 0.123
    # other questions: a new key, scored afresh (the negative control of the planted value)
    changed = [dict(q, choices=list(reversed(q["choices"])), answer=3 - q["answer"]) for q in questions]
    assert reference_accuracies(args, changed, "cpu", torch.float32, 8, cache_dir=cache)["base_acc"] != 0.123
    # retrained weights under the same folder (new modification time): scored afresh
    weights = next(world["model"].glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    again = reference_accuracies(args, questions, "cpu", torch.float32, 8, cache_dir=cache)["base_acc"]
    assert again == first and again != 0.123
