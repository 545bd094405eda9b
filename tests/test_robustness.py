"""Every class of bad input gives one line naming the cause and the fix, a non-zero exit, no
traceback, no completion marker and no half-written or empty output folder; each class is run
against a representative script (and the missing GPU against every script that takes --device)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from brittle import io
from tests.activation_fixtures import FORGET, RETAIN, make_pair, write_texts
from tests.tiny_models import TINY_TEXTS, make_tiny_model, save_tiny

ROOT = Path(__file__).resolve().parents[1]
DEVICE_SCRIPTS = ["collect_activation_norms", "activation_separation_analysis", "activation_covariance_analysis",
                  "row_space_projection_analysis", "local_lipschitzness_analysis", "linear_probe_analysis",
                  "evaluate", "relearn", "layerwise_forgetting", "unlearn", "pretrain", "infer",
                  "mode_connectivity_analysis", "representation_similarity_analysis", "knowledge_probe_analysis"]


def one_line_error(err: str) -> str:
    """The single ``error:`` line of stderr (progress bars aside); fails on a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def no_result(folder: Path) -> None:
    """Neither a folder nor a staging folder beside it."""
    assert not folder.exists(), f"{folder} was created"
    if folder.parent.exists():
        assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from brittle.tokenizer import train_word_tokenizer

    tmp = tmp_path_factory.mktemp("robust")
    tok = train_word_tokenizer(TINY_TEXTS + FORGET + RETAIN)
    forget, retain = write_texts(tmp / "data")
    (tmp / "questions.jsonl").write_text(
        '{"id": "q0", "question": "the virus spreads through the", "choices": ["air", "lungs", "bats", "days"], '
        '"answer": 0}\n')
    a, b = make_pair(tmp, "gpt_neox", tok, changed_layer=1)
    return {"tmp": tmp, "tok": tok, "forget": forget, "retain": retain, "a": a, "b": b,
            "texts": ["--forget-file", str(forget), "--retain-file", str(retain), "--device", "cpu"]}


# ------------------------------------------------------------------ device and dtype

def test_every_device_script_is_listed():
    from brittle import steps

    takes_device = {s.script[:-3] for s in steps.STEPS if s.device} | {"pretrain", "infer"}
    assert takes_device == set(DEVICE_SCRIPTS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("script", DEVICE_SCRIPTS)
def test_every_script_rejects_a_missing_gpu_in_one_line(script, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(script).main(["--device", "cuda", "--output-root", str(tmp_path / "out")])
    assert exc.value.code == 2
    line = one_line_error(capsys.readouterr().err)
    assert "no CUDA GPU" in line and "--device cpu" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,words", [(["--device", "gpu"], "unknown device 'gpu'"),
                                         (["--dtype", "half"], "unknown dtype 'half'"),
                                         (["--device", "cuda:x"], "unknown device")])
def test_a_mistyped_device_or_dtype_is_one_line(flags, words, capsys):
    import collect_activation_norms

    with pytest.raises(SystemExit) as exc:
        collect_activation_norms.main(flags)
    assert exc.value.code == 2 and words in one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------ output folders

def test_unwritable_output_is_detected_before_any_training(world, tmp_path, monkeypatch, capsys):
    import unlearn
    from brittle.unlearning import trainer

    def never(self):
        raise AssertionError("training started although the output folder cannot be written")

    monkeypatch.setattr(trainer.Trainer, "run", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    d = world["tmp"] / "data"
    code = unlearn.main(["--method", "ga_simple", "--model", str(world["a"]), "--data-dir", str(d),
                         "--outdir", str(blocker / "model"), "--device", "cpu", "--no-progress"])
    assert code == 2 and "cannot create folder" in one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------ models that are not models

@pytest.mark.parametrize("kind", ["empty folder", "missing path", "offline hub id"])
def test_a_bad_model_is_named_in_one_line_and_fast(kind, world, tmp_path, capsys):
    import evaluate

    model, expected = {
        "empty folder": (tmp_path / "empty", "is a folder but not a model"),
        "missing path": (tmp_path / "no" / "such" / "model", "model folder not found"),
        "offline hub id": ("nobody/no-such-model", "not in the local HuggingFace cache"),
    }[kind]
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    code = evaluate.main(["--model", str(model), "--data-dir", str(world["tmp"] / "data"), "--max-retain", "3",
                          "--retain-file", str(world["retain"]), "--output-root", str(out), "--device", "cpu"])
    assert code == 2 and expected in one_line_error(capsys.readouterr().err)
    assert not out.exists() or not any(out.rglob("_DONE.json"))


def test_the_hub_check_takes_seconds_not_a_minute(monkeypatch):
    """Online mode with no network: one socket decides (transformers alone retries for ~50 s)."""
    from brittle import models
    from brittle.errors import UserError

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")         # nothing listens on the discard port
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):  # else the proxy would be asked
        monkeypatch.delenv(var, raising=False)
    models.hub_reachable.cache_clear()
    models.resolve_source.cache_clear()
    try:
        with pytest.raises(UserError, match="cannot reach the HuggingFace Hub"):
            models.resolve_source("nobody/no-such-model-either")
    finally:
        models.hub_reachable.cache_clear()
        models.resolve_source.cache_clear()


def test_the_hub_check_asks_the_proxy_when_one_is_set(monkeypatch):
    """Behind a proxy the Hub host is unreachable by design: the proxy decides."""
    import socket

    from brittle import models

    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")     # .invalid never resolves
    for var in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
        models.hub_reachable.cache_clear()
        assert models.hub_reachable() == (True, "")
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")         # a proxy that is down
        models.hub_reachable.cache_clear()
        reachable, why = models.hub_reachable()
        assert not reachable and why.startswith("127.0.0.1")
        monkeypatch.delenv("HTTPS_PROXY")                                 # no proxy: the host itself
        models.hub_reachable.cache_clear()
        reachable, why = models.hub_reachable()
        assert not reachable and why.startswith("hub.invalid")
    finally:
        listener.close()
        models.hub_reachable.cache_clear()


# ------------------------------------------------------------------ NaN and Inf

@pytest.fixture(scope="module")
def nan_model(world):
    """Model B with one NaN in one weight matrix."""
    path = world["tmp"] / "nan-model"
    model = make_tiny_model("gpt_neox", seed=0)
    with torch.no_grad():
        model.gpt_neox.layers[1].mlp.dense_h_to_4h.weight[0, 0] = float("nan")
    return save_tiny(model, path, world["tok"])


@pytest.mark.parametrize("script", ["collect_param_stats", "collect_activation_norms", "evaluate", "relearn"])
def test_nan_weights_are_one_line_naming_the_tensor(script, world, nan_model, tmp_path, capsys):
    out = tmp_path / "out"
    argv = {
        "collect_param_stats": ["--model-a", str(world["a"]), "--model-b", str(nan_model)],
        "collect_activation_norms": ["--model-a", str(world["a"]), "--model-b", str(nan_model), *world["texts"]],
        "evaluate": ["--model", str(nan_model), "--data-dir", str(world["tmp"] / "data"), "--max-retain", "3",
                     "--retain-file", str(world["retain"]), "--device", "cpu"],
        "relearn": ["--model", str(nan_model), "--train-file", str(world["forget"]), "--eval-file",
                    str(world["tmp"] / "questions.jsonl"), "--data-dir", str(world["tmp"] / "data"),
                    "--base-acc", "1", "--filtered-acc", "0.25", "--steps", "1", "--device", "cpu"],
    }[script]
    assert importlib.import_module(script).main([*argv, "--output-root", str(out)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "gpt_neox.layers.1.mlp.dense_h_to_4h.weight" in line and "NaN or Inf" in line
    assert not out.exists() or not any(out.rglob("_DONE.json"))
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file() and "_activation_cache" not in p.parts]


def test_non_finite_hidden_states_from_finite_weights_are_one_line(world, tmp_path, capsys):
    """Finite but huge embeddings overflow inside block 0 (its layer norms square them): the capture
    names where (the first MLP input) and the model instead of writing NaN statistics."""
    import collect_activation_norms

    huge = tmp_path / "huge"
    model = make_tiny_model("gpt_neox", seed=0)
    with torch.no_grad():
        model.gpt_neox.embed_in.weight.mul_(3e37)
    save_tiny(model, huge, world["tok"])
    out = tmp_path / "out"
    code = collect_activation_norms.main(["--model-a", str(world["a"]), "--model-b", str(huge), *world["texts"],
                                          "--output-root", str(out)])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and "the MLP input of block 0 of" in line and "holds NaN or Inf" in line and "huge" in line
    assert not any(out.rglob("_DONE.json")) and not any(out.rglob("*.csv"))


def test_a_non_finite_loss_stops_training_with_one_line(world, capsys, tmp_path):
    import unlearn

    d = world["tmp"] / "data"
    code = unlearn.main(["--method", "ga_simple", "--model", str(world["a"]), "--data-dir", str(d), "--outdir",
                         str(tmp_path / "u"), "--lr", "1e30", "--steps", "30", "--device", "cpu", "--no-progress"])
    assert code == 2 and "loss became" in one_line_error(capsys.readouterr().err)
    no_result(tmp_path / "u")


# ------------------------------------------------------------------ too little text

def test_a_one_line_text_file_is_one_line(world, tmp_path, capsys):
    import activation_covariance_analysis

    short = tmp_path / "one.txt"
    short.write_text(FORGET[0] + "\n")
    out = tmp_path / "out"
    code = activation_covariance_analysis.main(["--model-a", str(world["a"]), "--model-b", str(world["b"]),
                                                "--forget-file", str(short), "--retain-file", str(world["retain"]),
                                                "--device", "cpu", "--output-root", str(out)])
    assert code == 2 and "at least 2 texts" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_fewer_texts_than_moment_groups_is_a_warning_naming_what_is_coarser(world, tmp_path, capsys):
    import activation_covariance_analysis

    three = tmp_path / "three.txt"
    three.write_text("\n".join(FORGET[:3]) + "\n")
    code = activation_covariance_analysis.main(["--model-a", str(world["a"]), "--model-b", str(world["b"]),
                                                "--forget-file", str(three), "--retain-file", str(world["retain"]),
                                                "--device", "cpu", "--moment-groups", "5", "--n-bootstrap", "10",
                                                "--output-root", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0 and "warning: 3 forget texts for 5 moment groups" in err


# ------------------------------------------------------------------ layers the model does not have

@pytest.mark.parametrize("flags,words", [(["--profile", "reference"], "rmu: --block 7 out of range"),
                                         (["--block", "3"], "rmu: --block 3 out of range")])
def test_layers_the_model_lacks_are_one_line(world, tmp_path, capsys, flags, words):
    import unlearn

    code = unlearn.main(["--method", "rmu", "--model", str(world["a"]), "--data-dir", str(world["tmp"] / "data"),
                         "--outdir", str(tmp_path / "u"), "--device", "cpu", "--no-progress", *flags])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and words in line and "3 blocks" in line
    no_result(tmp_path / "u")


@pytest.mark.parametrize("method,flag", [("cb", "--target-hidden-states"), ("lat", "--adv-hidden-states"),
                                         ("cb_lat", "--adv-blocks")])
def test_hidden_state_and_block_flags_are_checked(world, tmp_path, capsys, method, flag):
    import unlearn

    code = unlearn.main(["--method", method, "--model", str(world["a"]), "--data-dir", str(world["tmp"] / "data"),
                         "--outdir", str(tmp_path / "u"), "--device", "cpu", "--no-progress", flag, "9"])
    assert code == 2 and "9 out of range" in one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------ the shell runners

def _fake_path(tmp_path: Path) -> dict:
    """PATH without uv, whose python3 only records that it was called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\necho called >> {tmp_path / 'python3-called'}\n")
    (bin_dir / "python3").chmod(0o755)
    tools = {name: Path(p) for name in ("sed", "ls", "tr", "dirname", "date", "cat", "basename")
             if (p := subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True,
                                     text=True).stdout.strip())}
    for name, target in tools.items():
        (bin_dir / name).symlink_to(target)
    return {**os.environ, "PATH": str(bin_dir)}


def test_pipeline_help_installs_nothing(tmp_path):
    run = subprocess.run(["/bin/bash", str(ROOT / "pipeline.sh"), "--help"], capture_output=True, text=True,
                         env=_fake_path(tmp_path), timeout=60)
    assert run.returncode == 0 and "--preset NAME" in run.stdout
    assert not (tmp_path / "python3-called").exists() and "install" not in run.stdout + run.stderr


@pytest.mark.parametrize("script,args", [("pipeline.sh", ["--preset"]), ("pipeline.sh", ["--preset", "--force"]),
                                         ("create_all_unlearning_models.sh", ["--methods"]),
                                         ("pipeline.sh", ["--bogus"]), ("pipeline.sh", ["--preset", "nope"]),
                                         ("pipeline.sh", ["--jobs", "0"]), ("pipeline.sh", ["--part", "1/2"]),
                                         ("pipeline.sh", ["--population", "--part", "3/2"]),
                                         ("pipeline.sh", ["--seeds", "0"]),
                                         ("pipeline.sh", ["--population", "--strengths", "strong"])])
def test_shell_runners_reject_bad_arguments_in_one_line(script, args, tmp_path):
    run = subprocess.run(["/bin/bash", str(ROOT / script), *args], capture_output=True, text=True,
                         env=_fake_path(tmp_path), timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and run.stderr.startswith("error: ")
    assert not (tmp_path / "python3-called").exists()


# ------------------------------------------------------------------ results tied to their inputs

def test_retraining_into_the_same_folder_recomputes_every_step_that_read_it(world, tmp_path, capsys):
    import collect_activation_norms
    import collect_param_stats

    b = tmp_path / "b"
    save_tiny(make_tiny_model("gpt_neox", seed=5), b, world["tok"])
    out = ["--output-root", str(tmp_path / "out")]
    pair = ["--model-a", str(world["a"]), "--model-b", str(b)]
    assert collect_param_stats.main([*pair, *out]) == 0
    assert collect_activation_norms.main([*pair, *world["texts"], *out]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.csv")}
    capsys.readouterr()
    assert collect_param_stats.main([*pair, *out]) == 0 and collect_activation_norms.main(
        [*pair, *world["texts"], *out]) == 0
    assert capsys.readouterr().out.count("[skip]") == 2                  # unchanged: both skip
    save_tiny(make_tiny_model("gpt_neox", seed=6), b, world["tok"])     # "retrained" into the same folder
    assert collect_param_stats.main([*pair, *out]) == 0 and collect_activation_norms.main(
        [*pair, *world["texts"], *out]) == 0
    assert "[skip]" not in capsys.readouterr().out
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.csv")}
    assert set(before) == set(after) and all(before[p] != after[p] for p in before)


# ------------------------------------------------------------------ interrupted and killed runs

def test_an_interrupted_step_keeps_the_previous_result_and_leaves_nothing_half_written(world, tmp_path,
                                                                                        monkeypatch):
    import collect_param_stats

    out = tmp_path / "o"
    args = ["--model-a", str(world["a"]), "--model-b", str(world["b"]), "--outdir", str(out)]
    assert collect_param_stats.main(args) == 0
    previous = (out / "per_matrix.csv").read_bytes()
    real = io.write_csv

    def dies_on_second_file(path, frame):
        if str(path).endswith("per_layer.csv"):
            raise KeyboardInterrupt                                      # killed between the two CSVs
        return real(path, frame)

    monkeypatch.setattr(io, "write_csv", dies_on_second_file)
    assert collect_param_stats.main([*args, "--force"]) == 130
    monkeypatch.undo()
    assert (out / "per_matrix.csv").read_bytes() == previous and (out / io.DONE_MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]           # no staging folder left


def test_a_killed_capture_leaves_no_orphan_beside_the_cache(world, tmp_path):
    """A capture killed with SIGKILL leaves its temporary folder; the next capture removes it."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import collect_activation_norms, os, signal\n"
            "from brittle.capture import accumulators\n"
            "def die(self): os.kill(os.getpid(), signal.SIGKILL)\n"
            "accumulators.ModelAccumulator.save = die\n"
            f"collect_activation_norms.main({['--model-a', str(world['a']), '--model-b', str(world['b']), *world['texts'], '--output-root', str(tmp_path / 'out')]!r})\n")
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert killed.returncode == -9
    cache = tmp_path / "out" / "_activation_cache"
    orphans = [p for p in cache.rglob(".*.tmp")]
    assert orphans, "the killed run should have left its temporary folder"
    import collect_activation_norms

    assert collect_activation_norms.main(["--model-a", str(world["a"]), "--model-b", str(world["b"]),
                                          *world["texts"], "--output-root", str(tmp_path / "out")]) == 0
    assert not [p for p in cache.rglob(".*.tmp")] and not [p for p in (tmp_path / "out").rglob(".*.staging")]


def test_script_results_are_readable_by_others(world, tmp_path):
    import collect_param_stats

    umask = os.umask(0o022)
    os.umask(umask)
    out = tmp_path / "o"
    assert collect_param_stats.main(["--model-a", str(world["a"]), "--model-b", str(world["b"]), "--outdir",
                                     str(out)]) == 0
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


# ------------------------------------------------------------------ help

def test_every_script_answers_help_without_importing_heavy_libraries():
    scripts = sorted(p.stem for p in ROOT.glob("*.py"))
    code = ("import sys, importlib, contextlib, io\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            f"for name in {scripts!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        try:\n"
            "            importlib.import_module(name).main(['--help'])\n"
            "        except SystemExit as exc:\n"
            "            assert exc.code == 0, name\n"
            "    assert 'uv run' in out.getvalue(), name\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'matplotlib', 'sklearn', 'pandas', 'scipy')\n"
            "               if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"--help imported {run.stdout.strip()}"


def test_help_shows_each_default_once_and_the_method_defaults():
    import argparse

    from brittle.unlearning.profiles import PROFILES

    for name in sorted(p.stem for p in ROOT.glob("*.py")):
        parser = importlib.import_module(name).build_parser([])
        text = parser.format_help()
        assert "(default: None)" not in text, name
        for action in parser._actions:
            if action.help and action.help is not argparse.SUPPRESS:
                assert parser.formatter_class(name)._get_help_string(action).lower().count("default:") <= 1, \
                    (name, action.dest)
    import unlearn

    text = unlearn.build_parser(["--method", "rmu"]).format_help()
    assert "rmu hyperparameters (tiny profile defaults)" in text
    assert f"(default: {PROFILES['rmu']['tiny']['steering_coeff']})" in text and "--epsilon" not in text
    assert "(default: 5e-05)" in unlearn.build_parser(["--method", "rmu", "--profile", "reference"]).format_help()


def test_require_finite_is_exact_whatever_the_sum():
    """The fast path (a finite sum) never hides a NaN or Inf, and an overflowing sum of finite
    values is not mistaken for one (fp16 sums overflow at 65504)."""
    import numpy as np

    from brittle.errors import UserError, require_finite

    require_finite(torch.full((100,), 60000.0, dtype=torch.float16), "big but finite fp16")   # sum overflows
    require_finite(np.full(10, 1e308), "big but finite float64")
    for bad in (float("nan"), float("inf"), -float("inf")):
        t = torch.zeros(50)
        t[7] = bad
        with pytest.raises(UserError, match="holds NaN or Inf"):
            require_finite(t, "t")
        with pytest.raises(UserError):
            require_finite(t.numpy(), "t")
    both = torch.zeros(4)
    both[0], both[1] = float("inf"), -float("inf")        # sum is NaN
    with pytest.raises(UserError):
        require_finite(both, "both")
    require_finite(torch.arange(5), "integers")
