"""brittle/run_scripts.py: several root scripts in one process give the files separate processes
give (byte for byte), stop at the first failure, and leave sys.argv and the thread count as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from brittle import run_scripts
from tests.weight_fixtures import shared_planted_pair

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return shared_planted_pair(tmp_path_factory)


def csv_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.csv"))}


def calls(pair, root: Path, seed: int = 0) -> list[list[str]]:
    pair_args = ["--model-a", str(pair.a), "--model-b", str(pair.b_planted), "--output-root", str(root)]
    # null_space_analysis draws random subspaces and Gaussian matrices: a script that used the
    # global generator would give other numbers after another script had drawn from it
    return [["null_space_analysis.py", *pair_args, "--seed", str(seed), "--null-draws", "3"],
            ["collect_param_stats.py", *pair_args],
            ["null_space_analysis.py", "--model-a", str(pair.a), "--model-b", str(pair.b_unrelated),
             "--output-root", str(root), "--seed", str(seed), "--null-draws", "3"]]


def test_split_calls():
    assert run_scripts.split_calls(["a.py", "--x", "1", "---", "b.py", "---"]) == [["a.py", "--x", "1"], ["b.py"]]
    assert run_scripts.split_calls([]) == []


def test_one_process_writes_what_separate_processes_write(pair, tmp_path):
    together, apart, other_seed = tmp_path / "together", tmp_path / "apart", tmp_path / "seed1"
    torch.manual_seed(123)   # the global generator in some state a fresh process would not have
    argv = [tok for call in calls(pair, together) for tok in (*call, run_scripts.SEPARATOR)]
    assert run_scripts.run_command_line(argv) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for call in calls(pair, apart):
        subprocess.run([sys.executable, *call], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    got, want = csv_files(together), csv_files(apart)
    assert len(want) >= 6 and got.keys() == want.keys()
    assert [name for name in want if got[name] != want[name]] == []
    # negative control: the comparison sees the seeded draws (another seed changes the null columns)
    assert run_scripts.run_command_line([*calls(pair, other_seed, seed=1)[0]]) == 0
    name = next(n for n in want if n.endswith("null_space_results.csv"))
    assert (other_seed / name).read_bytes() != want[name]


def test_stops_at_the_first_failure_and_restores_the_process(pair, tmp_path, capsys):
    torch.set_num_threads(1)
    argv_before = list(sys.argv)
    last = calls(pair, tmp_path)[-1]
    bad = ["null_space_analysis.py", "--model-a", str(tmp_path / "missing"), "--model-b", str(pair.b_planted),
           "--output-root", str(tmp_path)]
    status = run_scripts.run_command_line([*bad, "---", *last])
    assert status == 2
    out = capsys.readouterr()
    assert "failed (status 2)" in out.out and "error:" in out.err
    assert not list(tmp_path.rglob("null_space_results.csv"))   # the script after the failure never ran
    assert sys.argv == argv_before and torch.get_num_threads() == 1


def test_unknown_script_is_one_line(capsys):
    assert run_scripts.run_command_line(["nope.py", "--x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no script 'nope.py'")
    assert run_scripts.run_command_line([]) == 2
