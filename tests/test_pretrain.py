"""Pretraining: reproducibility, masking, frozen parameters, a planted fact, pretrain.py."""

import json

import pytest
import torch
from safetensors.torch import load_file

import pretrain
from brittle.data import synthetic as syn
from brittle.evaluation import cloze_accuracy
from brittle.pretraining import gpt_neox_config, init_model, lr_at, packed_batches, train_causal_lm
from brittle.tokenizer import train_word_tokenizer
from tests.tiny_models import TINY_TEXTS


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: on a busy 2-core machine one thread was measured 4x faster than two
    (spinning OpenMP workers); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(tok, seed=0, hidden=32, seq=32):
    cfg = gpt_neox_config(len(tok), hidden, 2, 4, max_positions=seq, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
    return init_model(cfg, seed)


def test_init_is_a_function_of_the_seed(tiny_tokenizer):
    a, b, c = small_model(tiny_tokenizer, 0), small_model(tiny_tokenizer, 0), small_model(tiny_tokenizer, 1)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.gpt_neox.embed_in.weight, c.gpt_neox.embed_in.weight)


def test_same_seed_same_training(tiny_tokenizer):
    runs = []
    for seed in (0, 0, 1):
        model = small_model(tiny_tokenizer)
        log = train_causal_lm(model, tiny_tokenizer, TINY_TEXTS * 4, steps=6, lr=1e-2, batch_size=2,
                              seed=seed, seq_len=16, progress=False)
        runs.append((model.state_dict(), log))
    assert all(torch.equal(v, runs[1][0][k]) for k, v in runs[0][0].items())
    assert runs[0][1].equals(runs[1][1])
    assert not runs[0][1]["loss"].equals(runs[2][1]["loss"])  # another batch order
    assert runs[0][1]["loss"].notna().all() and len(runs[0][1]) == 6


def test_padding_is_masked_from_the_finetuning_loss(tiny_tokenizer):
    """Padded-batch loss of the fine-tuning loop = token-weighted mean of each text's own HF loss."""
    from brittle.finetuning import causal_lm_loss, pad_batch

    model = small_model(tiny_tokenizer)
    texts = TINY_TEXTS[:3]  # different lengths, so the batch is padded
    total = count = 0.0
    for text in texts:
        ids = torch.tensor([tiny_tokenizer(text)["input_ids"] + [tiny_tokenizer.eos_token_id]])
        with torch.no_grad():
            total += float(model(ids, labels=ids).loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    batch = pad_batch(tiny_tokenizer, texts, max_length=64)
    assert int(batch["attention_mask"].sum()) - len(texts) == count
    with torch.no_grad():
        assert float(causal_lm_loss(model, batch)) == pytest.approx(total / count, rel=1e-5)


def test_frozen_parameters_stay_bit_identical(tiny_tokenizer):
    model = small_model(tiny_tokenizer)
    model.gpt_neox.embed_in.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_causal_lm(model, tiny_tokenizer, TINY_TEXTS * 4, steps=3, lr=1e-2, batch_size=2, seq_len=16, progress=False)
    after = model.state_dict()
    assert torch.equal(before["gpt_neox.embed_in.weight"], after["gpt_neox.embed_in.weight"])
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])


def test_schedule_and_packing(tiny_tokenizer):
    assert lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    # the first batch is the start of the texts, in the seeded epoch order, joined with EOS, cut in blocks of 8
    batch, mask = next(packed_batches(tiny_tokenizer, TINY_TEXTS, 8, 2, 1, torch.Generator().manual_seed(3)))
    order = torch.randperm(len(TINY_TEXTS), generator=torch.Generator().manual_seed(3)).tolist()
    ids = tiny_tokenizer(TINY_TEXTS, add_special_tokens=False)["input_ids"]
    stream = [t for i in order for t in (*ids[i], tiny_tokenizer.eos_token_id)]
    assert batch.shape == (2, 8) and batch.flatten().tolist() == stream[:16] and bool(mask.all())


def test_small_world_learns_planted_facts_and_filter_removes_them():
    """A reduced tiny world: base learns the hazard facts, the filtered model stays at chance."""
    world = syn.build_world(seed=0, n_scored=4, n_format=8, filler_per_word=1)
    full, filtered = syn.corpus(world, True, 0), syn.corpus(world, False, 0)
    tok = train_word_tokenizer(full)
    trained_t = syn.questions(world, "hazard", (0,), 0)
    eval_t = syn.questions(world, "hazard", syn.EVAL_TEMPLATES, 0)
    acc = {}
    for name, corpus in (("base", full), ("filtered", filtered)):
        model = small_model(tok, hidden=128, seq=32)
        train_causal_lm(model, tok, corpus, steps=200, lr=5e-3, batch_size=16, seq_len=32, progress=False)
        acc[name] = (cloze_accuracy(model, tok, trained_t, progress=False),
                     cloze_accuracy(model, tok, eval_t, progress=False))
    assert acc["base"][0] >= 0.85 and acc["base"][1] >= 0.45, acc
    assert acc["filtered"][0] <= 0.4 and acc["filtered"][1] <= 0.4, acc


def test_pretrain_script_reproducible_and_loadable(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    full = tmp_path / "full.txt"
    full.write_text("\n".join(TINY_TEXTS * 3) + "\n")
    part = tmp_path / "part.txt"
    part.write_text("\n".join(TINY_TEXTS[2:] * 3) + "\n")
    common = ["--hidden", "32", "--seq-len", "16", "--batch-size", "4", "--steps", "5", "--quiet", "--threads", "1"]
    for name in ("a", "b"):
        assert pretrain.main(["--corpus", str(full), "--outdir", str(tmp_path / name), *common]) == 0
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len((tmp_path / "a" / "training_log.csv").read_text().splitlines()) == 1 + 5
    assert (tmp_path / "a" / "training_loss.png").stat().st_size > 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert model.config.model_type == "gpt_neox" and model.config.vocab_size == len(tok)
    # the filtered model shares the tokenizer built from the full corpus
    assert pretrain.main(["--corpus", str(part), "--tokenizer-corpus", str(full),
                          "--outdir", str(tmp_path / "f"), *common]) == 0
    assert (tmp_path / "f" / "tokenizer.json").read_text() == (tmp_path / "a" / "tokenizer.json").read_text()
    meta = json.loads((tmp_path / "a" / "run_meta.json").read_text())
    assert meta["n_parameters"] == sum(p.numel() for p in model.parameters())
    capsys.readouterr()
    assert pretrain.main(["--corpus", str(full), "--outdir", str(tmp_path / "a"), *common]) == 0
    assert "[skip]" in capsys.readouterr().out
    assert pretrain.main(["--corpus", str(tmp_path / "missing.txt"), "--outdir", str(tmp_path / "x")]) == 2


def test_help():
    with pytest.raises(SystemExit) as exc:
        pretrain.main(["--help"])
    assert exc.value.code == 0
