"""infer.py and brittle.generation / brittle.inference_store on tiny in-process models."""

from __future__ import annotations

import builtins
import copy
import hashlib

import pandas as pd
import pytest
import torch

import infer
from brittle.generation import GenerationSettings, encode_prompt, format_prompt, generate
from brittle.inference_store import upsert_outputs
from tests.tiny_models import make_tiny_model, save_tiny

PROMPT = "the pathogen vorax is carried by"
CHAT_TEMPLATE = ("{% for m in messages %}question : {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}answer :{% endif %}")


@pytest.fixture(scope="module")
def models(tmp_path_factory, request):
    """Two tiny GPT-NeoX folders and one Llama folder sharing the word-level tokenizer."""
    tok = request.getfixturevalue("tiny_tokenizer")
    root = tmp_path_factory.mktemp("infer_models")
    paths = {}
    for name, arch, seed in [("m1", "gpt_neox", 1), ("m2", "gpt_neox", 2), ("extra", "llama", 3)]:
        folder = root / ("more" if name == "extra" else "unlearned") / f"tiny__{name}"
        paths[name] = save_tiny(make_tiny_model(arch, seed=seed, vocab_size=len(tok)), folder, tok)
    return paths


def _manual_greedy(model, ids: list[int], max_new_tokens: int, eos: int) -> list[int]:
    """Oracle: argmax decoding by repeated full forward passes (no cache, no generate())."""
    seq = list(ids)
    new = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0, -1]
        nxt = int(logits.argmax())
        new.append(nxt)
        seq.append(nxt)
        if nxt == eos:
            break
    return new


@pytest.mark.parametrize("max_new", [3, 9])
def test_greedy_equals_manual_argmax_and_respects_max_new_tokens(tiny_tokenizer, max_new):
    model = make_tiny_model("llama", seed=5, vocab_size=len(tiny_tokenizer))
    settings = GenerationSettings(max_new_tokens=max_new, greedy=True)
    text = generate(model, tiny_tokenizer, PROMPT, settings)
    assert generate(model, tiny_tokenizer, PROMPT, settings) == text  # deterministic
    ids = encode_prompt(tiny_tokenizer, PROMPT)
    new = _manual_greedy(model, ids, max_new, tiny_tokenizer.eos_token_id)
    assert len(new) <= max_new
    assert text == tiny_tokenizer.decode(new, skip_special_tokens=True).strip()


def test_seeded_sampling_is_reproducible(tiny_tokenizer):
    model = make_tiny_model("gpt_neox", seed=6, vocab_size=len(tiny_tokenizer))
    s0 = GenerationSettings(max_new_tokens=12, temperature=5.0, top_p=1.0, seed=0)
    s1 = GenerationSettings(max_new_tokens=12, temperature=5.0, top_p=1.0, seed=1)
    a, b = generate(model, tiny_tokenizer, PROMPT, s0), generate(model, tiny_tokenizer, PROMPT, s0)
    c = generate(model, tiny_tokenizer, PROMPT, s1)
    assert a == b
    assert a != c  # negative control: a different seed samples something else at temperature 5


def test_chat_template_is_applied_unless_disabled(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)  # the fixture is shared by the session
    assert format_prompt(tok, PROMPT) == PROMPT  # no template: unchanged
    tok.chat_template = CHAT_TEMPLATE
    assert format_prompt(tok, PROMPT) == f"question : {PROMPT} answer :"
    assert format_prompt(tok, PROMPT, chat_template=False) == PROMPT
    assert encode_prompt(tok, PROMPT) == tok(f"question : {PROMPT} answer :", add_special_tokens=False)["input_ids"]


def test_single_and_side_by_side(models, capsys):
    argv = ["--model", str(models["m1"]), "--prompt", PROMPT, "--greedy", "--max-new-tokens", "5"]
    assert infer.main(argv) == 0
    single = capsys.readouterr().out
    assert infer.main(argv + ["--model-b", str(models["m2"])]) == 0
    both = capsys.readouterr().out
    assert "=== tiny__m1 ===" in both and "=== tiny__m2 ===" in both
    assert both.startswith(single.rstrip("\n"))  # A answers the same alone and beside B


def test_sweep_file_named_by_sha256_and_updated_in_place(models, tmp_path, tiny_tokenizer):
    out = tmp_path / "inference"
    common = ["--sweep", "--prompt", PROMPT, "--outdir", str(out), "--greedy"]
    models_dir = str(models["m1"].parent)
    assert infer.main(common + ["--unlearned-dir", models_dir, "--max-new-tokens", "6"]) == 0
    csv = out / f"{hashlib.sha256(PROMPT.encode('utf-8')).hexdigest()}.csv"
    assert sorted(p.name for p in out.iterdir()) == [csv.name]
    table = pd.read_csv(csv, keep_default_na=False)
    assert list(table.columns) == ["prompt", "model", "model_path", "output"]
    assert list(table["model"]) == ["tiny__m1", "tiny__m2"]
    assert set(table["prompt"]) == {PROMPT}
    # Each row holds what that model generates on its own.
    from transformers import AutoModelForCausalLM

    for _, row in table.iterrows():
        model = AutoModelForCausalLM.from_pretrained(row["model_path"])
        assert row["output"] == generate(model, tiny_tokenizer, PROMPT,
                                         GenerationSettings(max_new_tokens=6, greedy=True))
    first = table.copy()

    # Another models dir adds a row; re-sweeping the first dir with other settings updates its rows.
    assert infer.main(common + ["--unlearned-dir", str(models["extra"].parent), "--max-new-tokens", "6"]) == 0
    assert infer.main(common + ["--unlearned-dir", models_dir, "--max-new-tokens", "1"]) == 0
    table = pd.read_csv(csv, keep_default_na=False)
    assert list(table["model"]) == ["tiny__m1", "tiny__m2", "tiny__extra"]
    assert table.loc[2, "output"] != ""
    shorter = table["output"].str.split().str.len()
    assert (shorter[:2] <= 1).all() and (first["output"].str.split().str.len() > 1).any()

    # A different prompt goes to a different file.
    assert infer.main(["--sweep", "--prompt", PROMPT + " ?", "--outdir", str(out), "--greedy",
                       "--unlearned-dir", models_dir, "--max-new-tokens", "2"]) == 0
    assert len(list(out.glob("*.csv"))) == 2


def test_include_base_reads_preset(models, tmp_path):
    preset = tmp_path / "p.env"
    preset.write_text(f"BASE_MODEL={models['extra']}\nFILTERED_MODEL=\nPUBLISHED_UNLEARNED=\n")
    out = tmp_path / "o"
    argv = ["--sweep", "--include-base", "--preset", str(preset), "--unlearned-dir", str(tmp_path / "none"),
            "--prompt", PROMPT, "--outdir", str(out), "--greedy", "--max-new-tokens", "2"]
    assert infer.main(argv) == 0
    table = pd.read_csv(next(out.glob("*.csv")), keep_default_na=False)
    assert list(table["model_path"]) == [str(models["extra"])]


def test_upsert_keeps_other_rows(tmp_path):
    path = tmp_path / "t.csv"
    upsert_outputs(path, [{"prompt": "p", "model": "a", "model_path": "A", "output": "1"},
                          {"prompt": "p", "model": "b", "model_path": "B", "output": ""}])
    table = upsert_outputs(path, [{"prompt": "p", "model": "b", "model_path": "B", "output": "2"},
                                  {"prompt": "p", "model": "c", "model_path": "C", "output": "3"}])
    assert table.values.tolist() == [["p", "a", "A", "1"], ["p", "b", "B", "2"], ["p", "c", "C", "3"]]
    assert pd.read_csv(path, dtype=str, keep_default_na=False).equals(table)


def test_interactive_streams_and_exits_cleanly(models, monkeypatch, capsys, tiny_tokenizer):
    answers = iter(["", PROMPT])

    def fake_input(_prompt=""):
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(builtins, "input", fake_input)
    assert infer.main(["--model", str(models["m1"]), "--interactive", "--greedy", "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    from transformers import AutoModelForCausalLM

    expected = generate(AutoModelForCausalLM.from_pretrained(models["m1"]), tiny_tokenizer, PROMPT,
                        GenerationSettings(max_new_tokens=5, greedy=True))
    assert expected and expected in out

    def interrupt(_prompt=""):
        raise KeyboardInterrupt

    monkeypatch.setattr(builtins, "input", interrupt)
    assert infer.main(["--model", str(models["m1"]), "--interactive"]) == 0


def test_bad_input_is_one_line_error(models, capsys, tmp_path):
    assert infer.main(["--model", str(models["m1"])]) == 2
    assert infer.main(["--sweep", "--prompt", "x", "--unlearned-dir", str(tmp_path / "missing")]) == 2
    assert infer.main(["--model", str(tmp_path / "no" / "such"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "Traceback" not in err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        infer.main(["--help"])
    assert exc.value.code == 0
    assert "uv run infer.py" in capsys.readouterr().out
