"""brittle.io: atomic files, all-or-nothing step folders, skip markers tied to their inputs."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from brittle import io
from brittle.errors import UserError
from brittle.steps import comparison_dir


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


def test_json_never_holds_nan(tmp_path):
    import numpy as np

    io.write_json(tmp_path / "x.json", {"ppl": float("nan"), "inf": float("-inf"), "arr": np.array([1.0, np.nan]),
                                        "ok": 1.5})
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"ppl": None, "inf": None, "arr": [1.0, None], "ok": 1.5}   # strict JSON parses


def test_result_files_are_readable_by_others(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    io.write_text(tmp_path / "f.txt", "x")
    run = io.StepRun(tmp_path / "step", {})
    assert not run.should_skip()
    io.write_text(run.path("a.csv"), "x")
    run.finish()
    for path in (tmp_path / "f.txt", tmp_path / "step" / "a.csv", tmp_path / "step" / io.DONE_MARKER):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask, path
    assert os.stat(tmp_path / "step").st_mode & 0o777 == 0o777 & ~umask


def test_step_run_skip_force_and_changed_params(tmp_path, capsys):
    run = io.StepRun(tmp_path / "s", {"a": 1, "force": True, "outdir": "ignored"}, argv=["--a", "1"])
    assert not run.should_skip()
    assert not (tmp_path / "s").exists()                         # nothing final until it finishes
    with run.timed("work"):
        pass
    run.finish(device="cpu")
    meta = io.read_json(tmp_path / "s" / io.RUN_META)
    assert meta["params"] == {"a": 1, "inputs": {}} and meta["argv"][1:] == ["--a", "1"] and meta["device"] == "cpu"
    assert {"git_commit", "versions", "timings", "seconds"} <= set(meta) and "work" in meta["timings"]
    assert io.StepRun(tmp_path / "s", {"a": 1}).should_skip()
    assert "[skip]" in capsys.readouterr().out
    forced = io.StepRun(tmp_path / "s", {"a": 1})
    assert not forced.should_skip(force=True)
    assert (tmp_path / "s" / io.DONE_MARKER).exists()           # the old result stays until the new one is done
    forced.finish()
    assert not io.StepRun(tmp_path / "s", {"a": 2}).should_skip()   # different params recompute
    io.discard_unfinished()


def test_marker_is_tied_to_the_input_weights_and_files(tmp_path):
    model, data = tmp_path / "model", tmp_path / "texts.txt"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights v1")
    data.write_text("a\nb\n")
    make = lambda: io.StepRun(tmp_path / "s", {"k": 1}, models={"a": model}, files={"texts": data})  # noqa: E731
    run = make()
    assert not run.should_skip()
    run.finish()
    assert make().should_skip(quiet=True)
    (model / "model.safetensors").write_bytes(b"weights v2, retrained into the same folder")
    assert not make().should_skip(quiet=True)                    # new weights: recompute
    io.discard_unfinished()
    run = make()
    run.should_skip()
    run.finish()
    data.write_text("a\nc\n")
    assert not make().should_skip(quiet=True)                    # edited texts: recompute
    io.discard_unfinished()


def test_a_failed_run_leaves_the_previous_result_and_no_staging(tmp_path):
    run = io.StepRun(tmp_path / "s", {"v": 1})
    run.should_skip()
    io.write_text(run.path("x.csv"), "old result")
    run.finish()
    again = io.StepRun(tmp_path / "s", {"v": 2})
    assert not again.should_skip()
    io.write_text(again.path("x.csv"), "half")
    io.discard_unfinished()                                      # what run_main does when a body raises
    assert sorted(os.listdir(tmp_path)) == ["s"]                 # no staging folder left behind
    assert (tmp_path / "s" / "x.csv").read_text() == "old result"
    assert io.read_json(tmp_path / "s" / io.DONE_MARKER)["params"]["v"] == 1


def test_a_never_finished_first_run_leaves_no_folder(tmp_path):
    run = io.StepRun(tmp_path / "s", {})
    run.should_skip()
    io.write_text(run.path("x.csv"), "half")
    io.discard_unfinished()
    assert os.listdir(tmp_path) == []


def test_foreign_files_are_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("someone's work")
    with pytest.raises(UserError, match="not a result of this tool"):
        io.StepRun(tmp_path / "mine", {}).should_skip()
    assert (tmp_path / "mine" / "notes.txt").read_text() == "someone's work"


def test_unwritable_location_fails_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match="cannot create folder"):
        io.StepRun(tmp_path / "a_file" / "step", {}).should_skip()


def test_stale_temporaries_of_dead_processes_are_swept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()                  # a pid that has exited
    (tmp_path / f".step.{dead}-0a1b2c3d.staging").mkdir()
    (tmp_path / f".x.csv.{dead}-0a1b2c3d.tmp.csv").write_text("half")
    alive = tmp_path / f".other.{os.getpid()}-0a1b2c3d.staging"   # this process: still working
    alive.mkdir()
    removed = io.sweep_stale_temporaries(tmp_path)
    assert len(removed) == 2 and alive.exists() and sorted(os.listdir(tmp_path)) == [alive.name]


def test_read_lines_names_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="forget texts not found"):
        io.read_lines(tmp_path / "nope.txt", what="forget texts")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(UserError, match="holds no text"):
        io.read_lines(tmp_path / "blank.txt")
    (tmp_path / "t.txt").write_text(" a \n\nb\nc\n")
    assert io.read_lines(tmp_path / "t.txt") == ["a", "b", "c"] and io.read_lines(tmp_path / "t.txt", 2) == ["a", "b"]


def test_model_slug_and_comparison_dir(tmp_path):
    assert io.model_slug("EleutherAI/deep-ignorance-unfiltered") == "EleutherAI_deep-ignorance-unfiltered"
    (tmp_path / "tiny-base").mkdir()
    assert io.model_slug(str(tmp_path / "tiny-base") + "/") == "tiny-base"
    assert comparison_dir("outputs", "a/b", "c/d").as_posix() == "outputs/a_b__vs__c_d"
