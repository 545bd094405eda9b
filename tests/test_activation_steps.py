"""Steps 8, 9, 11, 12, 13 through main(argv) on tiny GPT-NeoX and Llama pairs, with planted signals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from brittle.capture import CaptureConfig, ModelSpec, ensure_captures
from brittle.io import read_lines
from brittle.models import mlp_input_linears
from tests.activation_fixtures import FORGET, RETAIN, make_pair, write_texts
from tests.tiny_models import TINY_TEXTS, make_tiny_model, save_tiny

ARCHS = ("gpt_neox", "llama")
OUTPUT_KIND = {"gpt_neox": "dense_4h_to_h", "llama": "down_proj"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from brittle.tokenizer import train_word_tokenizer

    tok = train_word_tokenizer(TINY_TEXTS + FORGET + RETAIN)
    tmp = tmp_path_factory.mktemp("steps")
    forget, retain = write_texts(tmp / "data")
    pairs = {arch: make_pair(tmp, arch, tok, changed_layer=1) for arch in ARCHS}
    return tmp, tok, forget, retain, pairs


def _common(tmp, forget, retain):
    return ["--forget-file", str(forget), "--retain-file", str(retain), "--device", "cpu", "--n-bootstrap", "30",
            "--output-root", str(tmp / "out"), "--moment-groups", "4", "--batch-size", "4"]


@pytest.mark.parametrize("arch", ARCHS)
def test_separation_covariance_probes_lipschitz(world, arch):
    import activation_covariance_analysis
    import activation_separation_analysis
    import linear_probe_analysis
    import local_lipschitzness_analysis

    tmp, _, forget, retain, pairs = world
    a, b = pairs[arch]
    common = _common(tmp, forget, retain)
    pair = ["--model-a", str(a), "--model-b", str(b)]
    comp = tmp / "out" / f"{arch}-a__vs__{arch}-b"

    assert activation_separation_analysis.main([*pair, *common]) == 0
    sep = pd.read_csv(comp / "activation_separation" / "separation_metrics.csv")
    change = pd.read_csv(comp / "activation_separation" / "separation_change.csv")
    assert set(sep.model) == {"a", "b"} and sep.hidden_state.nunique() == 4
    # B differs from A only from block 1 on: hidden states 0 and 1 are identical, so is every metric.
    early = change[change.hidden_state <= 1]
    assert (early.change_b_minus_a.fillna(0) == 0).all()
    assert (change[change.hidden_state >= 2].change_b_minus_a.abs() > 0).any()

    assert activation_covariance_analysis.main([*pair, *common]) == 0
    cov = pd.read_csv(comp / "activation_covariance" / "covariance_comparison.csv")
    assert (cov.loc[cov.hidden_state <= 1, ["wasserstein_forget", "wasserstein_retain"]] == 0).all().all()
    assert (cov.loc[cov.hidden_state >= 2, "wasserstein_forget"] > 0).all()
    # unchanged hidden states: no selectivity ratio (0/0) but a selectivity difference of exactly 0
    unchanged = cov[cov.hidden_state <= 1]
    assert unchanged.selectivity_ratio.isna().all() and (unchanged.selectivity_diff == 0).all()
    assert np.isfinite(cov.selectivity_diff).all()
    metrics = pd.read_csv(comp / "activation_covariance" / "covariance_metrics.csv")
    assert ((metrics.effective_rank >= 1) & (metrics.effective_rank <= 32)).all()
    spectra = pd.read_csv(comp / "activation_covariance" / "eigenspectra.csv")
    assert len(spectra) == 4 * 2 * 2 * 32
    # shape W1 and the selectivity difference recomputed from the written eigenvalues with scipy
    from scipy.stats import wasserstein_distance

    lam = {key: g.eigenvalue.to_numpy() for key, g in spectra.groupby(["hidden_state", "split", "model"])}
    for row in cov.itertuples():
        h = row.hidden_state
        rel = {}
        for split in ("forget", "retain"):
            lam_a, lam_b = lam[(h, split, "a")], lam[(h, split, "b")]
            pos_a, pos_b = lam_a.clip(min=0), lam_b.clip(min=0)   # round-off negatives carry no variance
            shape = wasserstein_distance(pos_a / pos_a.mean(), pos_b / pos_b.mean())
            assert getattr(row, f"wasserstein_shape_{split}") == pytest.approx(shape, rel=1e-6, abs=1e-9)
            rel[split] = wasserstein_distance(lam_a, lam_b) / lam_a.mean()
        assert row.selectivity_diff == pytest.approx(rel["forget"] - rel["retain"], rel=1e-6, abs=1e-9)

    assert linear_probe_analysis.main(["--model", str(a), *common]) == 0
    probes = pd.read_csv(tmp / "out" / f"{arch}-a" / "linear_probes" / "probe_results.csv")
    summary = json.loads((tmp / "out" / f"{arch}-a" / "linear_probes" / "summary.json").read_text())
    assert len(probes) == 4 and summary["n_forget"] == len(FORGET) and summary["n_retain"] == len(RETAIN)
    assert ((probes.auc >= 0) & (probes.auc <= 1)).all()
    assert (probes.selectivity == probes.accuracy - probes.majority_baseline).all()

    # A model against itself: every sensitivity ratio is exactly 1 (same perturbations, same model).
    at = common.index("--moment-groups")
    no_cache = common[:at] + common[at + 2:]   # step 12 reads no activation cache
    assert local_lipschitzness_analysis.main(["--model-a", str(a), "--model-b", str(a), "--n-perturbations", "3",
                                              *no_cache]) == 0
    same = pd.read_csv(tmp / "out" / f"{arch}-a__vs__{arch}-a" / "lipschitzness" / "lipschitz_change.csv")
    np.testing.assert_allclose(same.ratio_b_over_a, 1.0)
    summary = pd.read_csv(tmp / "out" / f"{arch}-a__vs__{arch}-a" / "lipschitzness" / "lipschitz_summary.csv")
    assert (summary[["lipschitz", "grad_norm", "grad_norm_per_token", "output_variance"]] > 0).all().all()


def test_grouped_folds_and_the_lexical_baseline(world, capsys):
    """With <texts>.groups.txt beside the texts, steps 8 and 13 write the words-only AUC of these
    very texts and folds (an independent call of the same sklearn protocol); a groups file that
    does not match its texts is a one-line error."""
    import activation_separation_analysis
    import linear_probe_analysis
    from brittle.probes import lexical_auc

    tmp, _, _, _, pairs = world
    a, b = pairs["gpt_neox"]
    data = tmp / "grouped"
    forget, retain = write_texts(data)
    f_groups = [f"f{i % 3}" for i in range(len(FORGET))]
    r_groups = [f"r{i % 3}" for i in range(len(RETAIN))]
    (data / "forget.groups.txt").write_text("\n".join(f_groups) + "\n")
    (data / "retain.groups.txt").write_text("\n".join(r_groups) + "\n")
    expected = lexical_auc(FORGET, RETAIN, groups=f_groups + r_groups, seed=0)
    common = _common(tmp, forget, retain)
    common[common.index("--output-root") + 1] = str(tmp / "grouped_out")
    assert activation_separation_analysis.main(["--model-a", str(a), "--model-b", str(b), *common]) == 0
    sep = pd.read_csv(tmp / "grouped_out" / "gpt_neox-a__vs__gpt_neox-b" / "activation_separation" /
                      "separation_metrics.csv")
    np.testing.assert_allclose(sep["lexical_auc"], expected)
    assert linear_probe_analysis.main(["--model", str(a), *common]) == 0
    folder = tmp / "grouped_out" / "gpt_neox-a" / "linear_probes"
    np.testing.assert_allclose(pd.read_csv(folder / "probe_results.csv")["lexical_auc"], expected)
    assert json.loads((folder / "summary.json").read_text())["probe"]["fold_groups"] == "entity"
    # the report shows the same baseline beside the probe's AUC
    from brittle.report_numbers import probe_auc
    assert probe_auc(folder / "probe_results.csv", "gpt_neox-a")["probe_lexical_auc"] == pytest.approx(expected)
    # negative control: ungrouped folds give a different baseline on the same texts
    assert lexical_auc(FORGET, RETAIN, seed=0) != expected

    (data / "retain.groups.txt").write_text("r0\n")
    capsys.readouterr()
    assert linear_probe_analysis.main(["--model", str(a), *common, "--force"]) == 2
    err = capsys.readouterr().err
    assert "retain.groups.txt has 1 lines" in err and "Traceback" not in err


def test_lipschitz_gradient_matches_single_text_autograd(world):
    """Batching and padding do not leak between texts: the batch gradient norm equals each
    text's own, computed alone without padding."""
    from brittle.capture import tokenize_texts
    from brittle.padding import right_pad
    from brittle.sensitivity import perturbation_stats

    _, tok, *_ = world
    model = make_tiny_model("llama")
    ids_list = tokenize_texts(tok, FORGET[:3], 64)
    ids, mask = right_pad(ids_list, tok.pad_token_id)
    stats = perturbation_stats(model, ids, mask, 0.01, 2, torch.Generator().manual_seed(0))
    for i, one in enumerate(ids_list):
        e = model.get_input_embeddings()(torch.tensor([one])).detach().requires_grad_(True)
        lp = torch.log_softmax(model(inputs_embeds=e).logits, -1)
        nll = -lp[0, :-1].gather(-1, torch.tensor(one[1:]).unsqueeze(-1)).sum()
        (g,) = torch.autograd.grad(nll, e)
        assert float(stats["grad_norm"][i]) == pytest.approx(float(g.norm()), rel=1e-4)


def _planted_row_space_pair(tmp, tok, arch, forget, retain, towards: str, layer: int = 1):
    """Model B = A + u vᵀ on every MLP input matrix of ``layer``, with v the direction whose MLP-input
    energy most exceeds the other split's (forget-aligned or, as the negative control, retain-aligned)."""
    a_dir = tmp / f"{arch}-rs-a"
    model = make_tiny_model(arch, seed=3)
    save_tiny(model, a_dir, tok)
    splits = {"forget": read_lines(forget), "retain": read_lines(retain)}
    # Same settings and cache as the step's run below, so A's capture is made once.
    caps = ensure_captures([ModelSpec(str(a_dir))], splits, CaptureConfig(device="cpu", moment_groups=4, batch_size=4),
                           tmp / "rs-cache", progress=False)
    second = {s: caps.models[0][s].moments("mlp") for s in splits}
    m = {s: (second[s]["sq"][:, layer].sum(0) / second[s]["count"].sum()).numpy() for s in splits}
    other = "retain" if towards == "forget" else "forget"
    v = torch.tensor(np.linalg.eigh(m[towards] - m[other])[1][:, -1], dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block, _, mod in mlp_input_linears(model):
            if block == layer:
                u = torch.randn(mod.weight.shape[0], generator=gen)
                mod.weight.add_(0.3 * torch.outer(u, v))
    b_dir = tmp / f"{arch}-rs-b-{towards}"
    save_tiny(model, b_dir, tok)
    return a_dir, b_dir


@pytest.mark.parametrize("arch", ARCHS)
def test_row_space_finds_planted_forget_aligned_update(world, arch):
    import row_space_projection_analysis

    tmp, tok, forget, retain, _ = world
    results = {}
    for towards in ("forget", "retain"):
        a, b = _planted_row_space_pair(tmp, tok, arch, forget, retain, towards)
        assert row_space_projection_analysis.main(["--model-a", str(a), "--model-b", str(b), "--top-k", "1",
                                                   "--cache-dir", str(tmp / "rs-cache"),
                                                   *_common(tmp, forget, retain)]) == 0
        results[towards] = pd.read_csv(tmp / "out" / f"{a.name}__vs__{b.name}" / "row_space_projection"
                                       / "row_space_projection.csv")
    planted = results["forget"]
    kinds = {"gpt_neox": {"dense_h_to_4h"}, "llama": {"gate_proj", "up_proj"}}[arch]
    assert set(planted.loc[planted.mlp_role == "input", "module_kind"]) == kinds
    # The output projections are untouched here: rows for them, but no row space and no fraction.
    outputs = planted[planted.mlp_role == "output"]
    assert set(outputs.module_kind) == {OUTPUT_KIND[arch]} and (outputs.k == 0).all() and (outputs.dW_fro == 0).all()
    hit = planted[(planted.block == 1) & (planted.activations_of == "a") & (planted.mlp_role == "input")]
    assert (hit.k == 1).all() and (hit.dW_rank == 1).all()
    assert (hit.fraction_forget > 3 * hit.random_baseline).all()
    assert (hit.selectivity_ratio > 1.2).all()
    assert planted.loc[planted.block != 1, "fraction_forget"].isna().all()  # unchanged matrices
    control = results["retain"]
    ctrl = control[(control.block == 1) & (control.activations_of == "a") & (control.mlp_role == "input")]
    assert (ctrl.selectivity_ratio < 1).all()


def _output_projection_inputs(model_dir, texts, block: int) -> list[np.ndarray]:
    """The input of block ``block``'s MLP output projection, (T, d_ff) float64 per text: the whole
    HF model run on one unpadded text at a time, a plain torch pre-hook on the module (none of the
    project's batching, padding, masking or hooks)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    layers = model.gpt_neox.layers if hasattr(model, "gpt_neox") else model.model.layers
    module = getattr(layers[block].mlp, "dense_4h_to_h", None) or layers[block].mlp.down_proj
    seen = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0].double().numpy()))
    try:
        with torch.no_grad():
            for text in texts:
                model(input_ids=torch.tensor([tok(text)["input_ids"]]))
    finally:
        handle.remove()
    return seen


def _fraction(xs: list[np.ndarray], v: np.ndarray) -> float:
    """Σ_t ‖Vᵀx_t‖² / Σ_t ‖x_t‖² over every token of every text."""
    return sum((np.linalg.norm(x @ v, axis=1) ** 2).sum() for x in xs) / sum((x ** 2).sum() for x in xs)


@pytest.mark.parametrize("arch", ARCHS)
def test_row_space_output_projections_against_numpy(world, arch):
    """B = A with a full-rank change in block 1's MLP output projection only (where RMU trains):
    that matrix gets finite fractions equal to numpy's from HF-captured inputs; every other matrix
    has k = 0."""
    import row_space_projection_analysis
    from transformers import AutoModelForCausalLM

    tmp, _, forget, retain, pairs = world
    a, b = pairs[arch]
    assert row_space_projection_analysis.main(["--model-a", str(a), "--model-b", str(b), "--top-k", "3",
                                               *_common(tmp, forget, retain)]) == 0
    out = pd.read_csv(tmp / "out" / f"{a.name}__vs__{b.name}" / "row_space_projection" / "row_space_projection.csv")
    changed = out[(out.mlp_role == "output") & (out.block == 1)]
    assert (out.drop(changed.index).k == 0).all() and out.drop(changed.index).fraction_forget.isna().all()
    hit = changed.set_index("activations_of")
    weights = [dict(AutoModelForCausalLM.from_pretrained(m).named_parameters()) for m in (a, b)]
    name = next(n for n in weights[0] if ".1.mlp." in n and OUTPUT_KIND[arch] in n and n.endswith("weight"))
    dw = (weights[1][name] - weights[0][name]).detach().numpy()       # (d_model, d_ff) float32
    v = np.linalg.svd(dw.astype(np.float64))[2][:3].T                  # top-3 right singular vectors
    assert (hit.k == 3).all() and (hit.d_in == dw.shape[1]).all()
    assert (hit.dW_rank == np.linalg.matrix_rank(dw)).all()
    for m, model_dir in (("a", a), ("b", b)):
        for split, path in (("forget", forget), ("retain", retain)):
            want = _fraction(_output_projection_inputs(model_dir, read_lines(path), 1), v)
            assert hit.loc[m, f"fraction_{split}"] == pytest.approx(want, rel=1e-4)
            assert hit.loc[m, f"fraction_{split}_ci_low"] <= hit.loc[m, f"fraction_{split}_ci_high"]


@pytest.mark.parametrize("arch", ARCHS)
def test_row_space_finds_planted_output_projection_update(world, arch):
    """B = A + u vᵀ on block 1's MLP output projection, v the direction of the projection's input
    (d_ff wide) that holds more of forget than of retain energy (shares of each split's total);
    the negative control takes v from retain instead."""
    import row_space_projection_analysis
    from brittle.models import mlp_output_linears

    tmp, tok, forget, retain, _ = world
    a_dir = tmp / f"{arch}-rso-a"
    save_tiny(make_tiny_model(arch, seed=5), a_dir, tok)
    xs = {s: _output_projection_inputs(a_dir, read_lines(p), 1) for s, p in (("forget", forget), ("retain", retain))}
    share = {s: sum(x.T @ x for x in xs[s]) / sum((x ** 2).sum() for x in xs[s]) for s in xs}
    results = {}
    for towards, other in (("forget", "retain"), ("retain", "forget")):
        v = np.linalg.eigh(share[towards] - share[other])[1][:, -1]
        model = make_tiny_model(arch, seed=5)
        with torch.no_grad():
            mod = next(mod for block, _, mod in mlp_output_linears(model) if block == 1)
            u = torch.randn(mod.weight.shape[0], generator=torch.Generator().manual_seed(0))
            mod.weight.add_(0.3 * torch.outer(u, torch.tensor(v, dtype=torch.float32)))
        b_dir = save_tiny(model, tmp / f"{arch}-rso-b-{towards}", tok)
        assert row_space_projection_analysis.main(["--model-a", str(a_dir), "--model-b", str(b_dir), "--top-k", "4",
                                                   *_common(tmp, forget, retain)]) == 0
        out = pd.read_csv(tmp / "out" / f"{a_dir.name}__vs__{b_dir.name}" / "row_space_projection"
                          / "row_space_projection.csv")
        changed = out[out.k > 0]
        assert set(changed.module) == {next(n for blk, n, _ in mlp_output_linears(model) if blk == 1)}
        results[towards] = changed.set_index("activations_of").loc["a"]
        hit = results[towards]
        assert hit.k == 1 and hit.dW_rank == 1
        for split in ("forget", "retain"):   # the planted direction's share, by construction
            assert hit[f"fraction_{split}"] == pytest.approx(float(v @ share[split] @ v), rel=1e-4)
    assert results["forget"].selectivity_ratio > 1.2
    assert results["retain"].selectivity_ratio < 1 / 1.2


def test_row_space_without_moments_is_a_user_error(world, capsys):
    import row_space_projection_analysis

    tmp, _, forget, retain, pairs = world
    a, b = pairs["gpt_neox"]
    args = [*_common(tmp, forget, retain), "--moment-groups", "0"]  # the last value wins
    assert row_space_projection_analysis.main(["--model-a", str(a), "--model-b", str(b), *args]) == 2
    assert "moments" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["activation_separation_analysis", "activation_covariance_analysis",
                                    "row_space_projection_analysis", "local_lipschitzness_analysis",
                                    "linear_probe_analysis"])
def test_help(script, capsys):
    import importlib

    with pytest.raises(SystemExit) as exc:
        importlib.import_module(script).main(["--help"])
    assert exc.value.code == 0 and "uv run" in capsys.readouterr().out


def test_probe_and_separation_features_come_from_each_texts_last_real_token(tmp_path):
    """Steps 8 and 13 read each text's last non-pad token. Planted: forget and retain texts of
    varied lengths (so batches are padded) that differ only in their LAST word: at hidden state 0
    (the embeddings, which see one token) the probe separates them perfectly and step 8's
    separation is positive. Negative control: texts that differ only in their FIRST word give
    identical last-token embeddings: no separation at hidden state 0 (centroid distance and
    between-class variance exactly 0; the held-out AUC of identical features is at or below 0.5,
    the known cross-validation artefact). Features read from the first token, or from a padded
    position, would fail one of the two."""
    import activation_separation_analysis
    import linear_probe_analysis
    from brittle.tokenizer import train_word_tokenizer

    fillers = ["the city lies on the river", "a small town", "people walk to the old market every day",
               "the bridge", "rain falls on the hills in spring and autumn", "one two three four five six"]
    worlds = {"last": ([f"{f} alpha" for f in fillers], [f"{f} omega" for f in fillers]),
              "first": ([f"alpha {f}" for f in fillers], [f"omega {f}" for f in fillers])}
    tok = train_word_tokenizer([t for f, r in worlds.values() for t in f + r])
    a = save_tiny(make_tiny_model("gpt_neox", vocab_size=len(tok)), tmp_path / "m-a", tok)
    b = save_tiny(make_tiny_model("gpt_neox", vocab_size=len(tok), seed=1), tmp_path / "m-b", tok)
    results = {}
    for name, (forget, retain) in worlds.items():
        data = tmp_path / name
        data.mkdir()
        (data / "forget.txt").write_text("\n".join(forget * 2) + "\n")
        (data / "retain.txt").write_text("\n".join(retain * 2) + "\n")
        common = ["--forget-file", str(data / "forget.txt"), "--retain-file", str(data / "retain.txt"),
                  "--device", "cpu", "--n-bootstrap", "10", "--output-root", str(tmp_path / f"out-{name}"),
                  "--batch-size", "4"]
        assert linear_probe_analysis.main(["--model", str(a), *common, "--folds", "3"]) == 0
        probes = pd.read_csv(tmp_path / f"out-{name}" / "m-a" / "linear_probes" / "probe_results.csv")
        assert activation_separation_analysis.main(["--model-a", str(a), "--model-b", str(b), *common]) == 0
        sep = pd.read_csv(tmp_path / f"out-{name}" / "m-a__vs__m-b" / "activation_separation" / "separation_metrics.csv")
        results[name] = (probes.set_index("hidden_state").auc[0],
                         sep[(sep.model == "a") & (sep.hidden_state == 0)].iloc[0])
    auc_last, sep_last = results["last"]
    auc_first, sep_first = results["first"]
    assert auc_last == pytest.approx(1.0) and auc_first <= 0.5
    assert sep_last.auc == pytest.approx(1.0) and sep_last.cosine_distance > 1e-3 and sep_last.variance_ratio > 0
    assert sep_first.cosine_distance == pytest.approx(0.0, abs=1e-7) and sep_first.variance_ratio == pytest.approx(0.0, abs=1e-7)
