"""Several models per invocation: ``--model-b B1 B2`` (and ``--model M1 M2``) must write exactly
what one call per model writes, into the same folders, with the same records and skip decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import collect_param_stats
import null_space_analysis
from brittle import cli
from brittle.io import model_slug
from tests.weight_fixtures import shared_planted_pair


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return shared_planted_pair(tmp_path_factory)


def _files(folder: Path) -> dict[str, bytes]:
    """Every result file of a step folder, except the records that hold times and dates."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in ("run_meta.json", "_DONE.json")}


@pytest.mark.parametrize("script,args", [(collect_param_stats, []), (null_space_analysis, ["--n-matrices", "6"])],
                         ids=["param_stats", "null_space"])
def test_several_b_write_what_one_call_per_b_writes(script, args, pair, tmp_path):
    bs = [str(pair.b_planted), str(pair.b_unrelated)]
    one, many = tmp_path / "one", tmp_path / "many"
    for b in bs:
        assert script.main(["--model-a", str(pair.a), "--model-b", b, "--output-root", str(one), *args]) == 0
    assert script.main(["--model-a", str(pair.a), "--model-b", *bs, "--output-root", str(many), *args]) == 0
    step = script.STEP
    for b in bs:
        rel = Path(f"{model_slug(str(pair.a))}__vs__{model_slug(b)}") / step
        assert _files(many / rel) == _files(one / rel)          # byte-identical results
        assert len(_files(one / rel)) >= 2
        # the record names the one model of this folder, as a one-model call does
        meta_one = json.loads((one / rel / "run_meta.json").read_text())
        meta_many = json.loads((many / rel / "run_meta.json").read_text())
        assert meta_many["argv"][1:] == [str(many) if t == str(one) else t for t in meta_one["argv"][1:]]
        assert meta_many["argv"].count(b) == 1 and all(o not in meta_many["argv"] for o in bs if o != b)


def test_a_finished_model_is_skipped_and_the_others_run(pair, tmp_path, capsys):
    root = tmp_path / "out"
    a, b1, b2 = str(pair.a), str(pair.b_planted), str(pair.b_same)
    assert collect_param_stats.main(["--model-a", a, "--model-b", b1, "--output-root", str(root)]) == 0
    capsys.readouterr()
    assert collect_param_stats.main(["--model-a", a, "--model-b", b1, b2, "--output-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "[1/2]" in out and "[2/2]" in out and "skip" in out.lower()
    assert (root / f"{model_slug(a)}__vs__{model_slug(b2)}" / "param_stats" / "_DONE.json").exists()


def test_one_failing_model_is_named_and_does_not_stop_the_others(pair, tmp_path, capsys):
    root = tmp_path / "out"
    missing = str(tmp_path / "no_such_model")
    status = collect_param_stats.main(["--model-a", str(pair.a), "--model-b", missing, str(pair.b_planted),
                                       "--output-root", str(root)])
    err = capsys.readouterr().err
    assert status == 2
    assert "no_such_model" in err and "1 of 2 models failed" in err and "Traceback" not in err
    assert (root / f"{model_slug(str(pair.a))}__vs__{model_slug(str(pair.b_planted))}" / "param_stats"
            / "_DONE.json").exists()
    assert not (root / f"{model_slug(str(pair.a))}__vs__no_such_model").exists()


def test_outdir_with_several_models_is_one_line(pair, tmp_path, capsys):
    status = collect_param_stats.main(["--model-a", str(pair.a), "--model-b", str(pair.b_planted), str(pair.b_same),
                                       "--outdir", str(tmp_path / "x")])
    assert status == 2
    assert "--outdir belongs to one model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv,expected", [
    (["--model-a", "A", "--model-b", "B1", "B2", "--force"], ["--model-a", "A", "--model-b", "B2", "--force"]),
    (["--model-b", "B1", "B2"], ["--model-b", "B2"]),
    (["--model-b=B1", "--seed", "3"], ["--model-b=B2", "--seed", "3"]),
])
def test_the_command_line_is_rewritten_to_one_model(argv, expected):
    assert cli._with_one_model(argv, ["--model-b"], "B2") == expected
