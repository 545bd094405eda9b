"""brittle.io: atomic writes, run metadata, completion markers, skip / --force / killed runs."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import collect_param_stats
from brittle import io
from tests.weight_fixtures import shared_planted_pair


def test_write_csv_roundtrip_leaves_no_temp_files(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")]})
    io.write_csv(tmp_path / "sub" / "x.csv", df)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sub" / "x.csv"), df)
    io.write_json(tmp_path / "x.json", {"p": tmp_path, "n": 3})
    assert io.read_json(tmp_path / "x.json") == {"p": str(tmp_path), "n": 3}
    assert sorted(os.listdir(tmp_path)) == ["sub", "x.json"] and os.listdir(tmp_path / "sub") == ["x.csv"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "x.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_step_run_skip_force_and_changed_params(tmp_path, capsys):
    run = io.StepRun(tmp_path / "s", {"a": 1, "force": True, "outdir": "ignored"}, argv=["--a", "1"])
    assert not run.should_skip()
    with run.timed("work"):
        pass
    run.finish(device="cpu")
    meta = io.read_json(tmp_path / "s" / io.RUN_META)
    assert meta["params"] == {"a": 1} and meta["argv"][1:] == ["--a", "1"] and meta["device"] == "cpu"
    assert {"git_commit", "versions", "timings", "seconds"} <= set(meta) and "work" in meta["timings"]
    assert io.StepRun(tmp_path / "s", {"a": 1}).should_skip()
    assert "[skip]" in capsys.readouterr().out
    assert not io.StepRun(tmp_path / "s", {"a": 1}).should_skip(force=True)
    assert not (tmp_path / "s" / io.DONE_MARKER).exists()          # forced run removed the old marker
    io.StepRun(tmp_path / "s", {"a": 1}).finish()
    assert not io.StepRun(tmp_path / "s", {"a": 2}).should_skip()   # different params recompute


def test_collect_skips_then_force_redoes(tmp_path_factory, tmp_path, capsys):
    pair = shared_planted_pair(tmp_path_factory)
    args = ["--model-a", str(pair.a), "--model-b", str(pair.b_planted), "--outdir", str(tmp_path / "o")]
    assert collect_param_stats.main(args) == 0
    first = (tmp_path / "o" / io.DONE_MARKER).stat().st_mtime_ns
    capsys.readouterr()
    assert collect_param_stats.main(args) == 0
    assert "[skip]" in capsys.readouterr().out
    assert (tmp_path / "o" / io.DONE_MARKER).stat().st_mtime_ns == first
    assert collect_param_stats.main([*args, "--force"]) == 0
    assert "[skip]" not in capsys.readouterr().out
    assert (tmp_path / "o" / io.DONE_MARKER).stat().st_mtime_ns > first
    assert collect_param_stats.main([*args, "--empirical-rank"]) == 0     # new params: recomputed
    assert "dW_empirical_rank" in pd.read_csv(tmp_path / "o" / "per_matrix.csv")
    # the marker stores the params that produced the files
    assert json.loads((tmp_path / "o" / io.DONE_MARKER).read_text())["params"]["empirical_rank"] is True


def test_run_killed_mid_write_leaves_no_marker(tmp_path_factory, tmp_path, monkeypatch):
    pair = shared_planted_pair(tmp_path_factory)
    args = ["--model-a", str(pair.a), "--model-b", str(pair.b_planted), "--outdir", str(tmp_path / "o")]
    assert collect_param_stats.main(args) == 0                      # an old, complete result
    real = io.write_csv

    def dies_on_second_file(path, frame):
        if str(path).endswith("per_layer.csv"):
            raise KeyboardInterrupt                                   # killed between the two CSVs
        return real(path, frame)

    monkeypatch.setattr(collect_param_stats, "write_csv", dies_on_second_file)
    assert collect_param_stats.main([*args, "--force"]) == 130
    assert not (tmp_path / "o" / io.DONE_MARKER).exists()
    assert not [f for f in os.listdir(tmp_path / "o") if f.endswith(".tmp.csv")]
    monkeypatch.undo()
    assert collect_param_stats.main(args) == 0                      # not skipped: it recomputes
    assert (tmp_path / "o" / io.DONE_MARKER).exists()


def test_model_slug_and_comparison_dir(tmp_path):
    assert io.model_slug("EleutherAI/deep-ignorance-unfiltered") == "EleutherAI_deep-ignorance-unfiltered"
    (tmp_path / "tiny-base").mkdir()
    assert io.model_slug(str(tmp_path / "tiny-base") + "/") == "tiny-base"
    assert io.comparison_dir("outputs", "a/b", "c/d").as_posix() == "outputs/a_b__vs__c_d"
