
from tests.tiny_models import make_tiny_model


def test_tiny_models_build():
    for arch in ("gpt_neox", "llama", "gpt2"):
        make_tiny_model(arch)
