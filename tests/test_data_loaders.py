"""Hub-dataset loaders on the genuine offline copies, and create_datasets.py end to end."""

import json

import pytest

import create_datasets
from brittle.data import tofu, wikitext, wmdp
from brittle.io import read_jsonl


def test_wmdp_bio_offline_copy(shared_data):
    qs = wmdp.load_wmdp_bio(shared_data / "wmdp_bio")
    assert len(qs) == wmdp.N_QUESTIONS == 1273
    assert qs[0]["question"].startswith("What is a disseminating factor") and qs[0]["answer"] == 0
    assert all(len(q["choices"]) == 4 for q in qs)
    forget, heldout = wmdp.split_questions(qs, 0.5, seed=0)
    ids_f, ids_h = {q["id"] for q in forget}, {q["id"] for q in heldout}
    assert not ids_f & ids_h and len(ids_f | ids_h) == 1273 and len(ids_h) == round(1273 * 0.5)
    assert wmdp.split_questions(qs, 0.5, seed=0)[1] == heldout
    assert wmdp.split_questions(qs, 0.5, seed=1)[1] != heldout


def test_tofu_offline_copy(shared_data):
    d = shared_data / "tofu"
    assert len(tofu.load_tofu("forget10", d)) == 400
    assert len(tofu.load_tofu("retain90", d)) == 3600
    assert len(tofu.load_tofu("holdout10", d)) == 400
    idk = tofu.load_idk(d)
    assert len(idk) == 100 and all(idk)


def test_wikitext_offline_copy(shared_data):
    rows = wikitext.load_wikitext("validation", shared_data / "wikitext2_raw")
    assert len(rows) == 3760  # one line per Hub row
    paras = wikitext.paragraphs(rows)
    assert paras and not any(p.startswith("=") for p in paras)


def test_missing_local_file_is_a_user_error(tmp_path, capsys):
    assert create_datasets.main(["--source", "hf", "--local-dir", str(tmp_path), "--outdir", str(tmp_path / "o")]) == 2
    assert "bio_questions.json" in capsys.readouterr().err


def test_create_synthetic_is_reproducible_and_skips(tmp_path, capsys):
    args = ["--n-scored", "4", "--n-format", "4", "--filler-per-word", "1"]
    assert create_datasets.main(args + ["--outdir", str(tmp_path / "a")]) == 0
    assert create_datasets.main(args + ["--outdir", str(tmp_path / "b")]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    for rel, meta in manifest["files"].items():
        data = (tmp_path / "a" / rel).read_bytes()
        assert data == (tmp_path / "b" / rel).read_bytes()
        assert meta["lines"] == data.count(b"\n")
    assert manifest["missing"] == []
    assert create_datasets.main(args + ["--outdir", str(tmp_path / "a")]) == 0
    assert "[skip]" in capsys.readouterr().out


def test_create_hf_from_offline_copies(shared_data, tmp_path):
    out = tmp_path / "di"
    assert create_datasets.main(["--source", "hf", "--local-dir", str(shared_data), "--outdir", str(out),
                                 "--max-retain", "50"]) == 0
    heldout = read_jsonl(out / "questions" / "hazard_eval.jsonl")
    val = read_jsonl(out / "questions" / "hazard_val.jsonl")
    forget = (out / "forget.txt").read_text().splitlines()
    assert len(heldout) + len(forget) == 1273
    # no held-out question is trained or unlearned on; validation comes from the forget part
    assert not {q["question"] for q in heldout} & {q["question"] for q in val}
    prompts = {r["prompt"] for r in read_jsonl(out / "forget_qa.jsonl")}
    assert len(prompts) == len(forget) and not prompts & {q["question"] for q in heldout}
    assert {q["question"] for q in val} <= prompts
    assert read_jsonl(out / "attack" / "hazard_eval.jsonl") == heldout
    assert len((out / "retain.txt").read_text().splitlines()) == 50
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["split"]["heldout_ids"]) == sorted(q["id"] for q in heldout)
    assert "questions/near_eval.jsonl" in manifest["missing"] and "questions/far_eval.jsonl" in manifest["missing"]


def test_create_tofu_from_offline_copy(shared_data, tmp_path):
    out = tmp_path / "tofu"
    assert create_datasets.main(["--source", "tofu", "--local-dir", str(shared_data), "--outdir", str(out)]) == 0
    assert len((out / "forget.txt").read_text().splitlines()) == 400
    assert len((out / "retain.txt").read_text().splitlines()) == 3600
    assert len((out / "idk.txt").read_text().splitlines()) == 100
    assert len(read_jsonl(out / "qa" / "holdout10.jsonl")) == 400
    retain_pairs = read_jsonl(out / "retain_qa.jsonl")     # the retain term's pairs, one per retain text
    assert len(retain_pairs) == 3600 and set(retain_pairs[0]) == {"prompt", "answer"}


def test_preset_names_source_and_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the preset's DATA_DIR is relative
    assert create_datasets.main(["--preset", "tiny", "--n-scored", "2", "--n-format", "2"]) == 0
    assert json.loads((tmp_path / "data" / "tiny" / "manifest.json").read_text())["source"] == "synthetic"
    assert create_datasets.main(["--preset", "no-such-preset"]) == 2


def test_help():
    with pytest.raises(SystemExit) as exc:
        create_datasets.main(["--help"])
    assert exc.value.code == 0


def test_forget_corpus_means_no_pairs_so_every_method_trains_on_the_corpus(shared_data, tmp_path):
    """With --forget-corpus the preference methods must not train on other documents (the WMDP
    questions) than the text methods: no forget_qa.jsonl is written."""
    local = tmp_path / "local"
    (local / "wmdp_bio").mkdir(parents=True)
    (local / "wmdp_bio" / "bio_questions.json").symlink_to(shared_data / "wmdp_bio" / "bio_questions.json")
    (local / "wikitext2_raw").symlink_to(shared_data / "wikitext2_raw")
    docs = ["a first document about a pathogen .", "a second document about its host ."]
    (local / "wmdp_bio" / "bio_forget.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = tmp_path / "di"
    assert create_datasets.main(["--source", "hf", "--local-dir", str(local), "--outdir", str(out),
                                 "--max-retain", "20", "--forget-corpus"]) == 0
    assert (out / "forget.txt").read_text().splitlines() == docs
    assert not (out / "forget_qa.jsonl").exists()
    assert "forget_qa.jsonl" in json.loads((out / "manifest.json").read_text())["missing"]
