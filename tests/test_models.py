"""Layer discovery and weight classification across GPT-NeoX, Llama and GPT-2 (no class ladder)."""

from __future__ import annotations

import re

import pytest

from brittle.models import classify_param, find_layer_list, layer_prefix_pattern, mlp_input_linears
from tests.tiny_models import make_tiny_model

# The oracle: what each family's HF implementation names its blocks and MLP input projections.
EXPECTED = {
    "gpt_neox": ("gpt_neox.layers", {"mlp.dense_h_to_4h"}),
    "llama": ("model.layers", {"mlp.gate_proj", "mlp.up_proj"}),
    "gpt2": ("transformer.h", {"mlp.c_fc"}),
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def model(request):
    return request.param, make_tiny_model(request.param)


def test_find_layer_list(model):
    arch, net = model
    path, blocks = find_layer_list(net)
    assert path == EXPECTED[arch][0] and len(blocks) == net.config.num_hidden_layers == 3


def test_classify_every_parameter(model):
    arch, net = model
    path, _ = find_layer_list(net)
    pattern = layer_prefix_pattern(path)
    for name, _ in net.named_parameters():
        layer, group = classify_param(name)
        assert (layer, group) == classify_param(name, pattern)          # generic == discovered pattern
        m = re.search(rf"{re.escape(path)}\.(\d+)\.", name)
        assert layer == (int(m.group(1)) if m else None), name
        if ".mlp." in name:
            assert group == "mlp", name
        elif re.search(r"\.(attention|self_attn|attn)\.", name):
            assert group == "attn", name
        else:
            assert group == "other", name                               # norms, embeddings, head
    assert {classify_param(n)[1] for n, _ in net.named_parameters()} == {"attn", "mlp", "other"}


def test_mlp_input_linears(model):
    arch, net = model
    path, _ = find_layer_list(net)
    found = mlp_input_linears(net)
    expected = {f"{path}.{i}.{sub}" for i in range(3) for sub in EXPECTED[arch][1]}
    assert {name for _, name, _ in found} == expected
    assert all(name.startswith(f"{path}.{layer}.") for layer, name, _ in found)


OUTPUT_PROJECTION = {"gpt_neox": "mlp.dense_4h_to_h", "llama": "mlp.down_proj", "gpt2": "mlp.c_proj"}


def test_mlp_output_linears(model):
    from brittle.models import mlp_output_linears

    arch, net = model
    path, _ = find_layer_list(net)
    found = mlp_output_linears(net)
    assert [(block, name) for block, name, _ in found] == [(i, f"{path}.{i}.{OUTPUT_PROJECTION[arch]}") for i in range(3)]


def test_model_skeleton_has_the_loaded_models_modules_and_no_weights(model, tmp_path):
    """Step 11 finds modules on the skeleton and hooks them by name on the loaded model."""
    from brittle.models import load_model, model_skeleton
    from tests.tiny_models import save_tiny

    arch, net = model
    save_tiny(net, tmp_path / arch)
    skeleton, loaded = model_skeleton(str(tmp_path / arch)), load_model(str(tmp_path / arch))
    shapes = {name: p.shape for name, p in loaded.named_parameters()}
    assert {name: p.shape for name, p in skeleton.named_parameters()} == shapes
    assert {p.device.type for p in skeleton.parameters()} == {"meta"}
