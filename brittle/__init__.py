"""brittle: what makes LLM unlearning brittle?

A small library behind the root-level scripts. One module per concern:
``runtime`` (device, dtype, seeds, .env), ``io`` (atomic outputs, run metadata, skip markers),
``cli`` (shared flags and one-line errors), ``models`` (loading, layer discovery, weight groups),
``weights`` (paired tensor streaming from safetensors), ``metrics`` (pure numerics).
"""
