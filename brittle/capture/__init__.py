"""Hidden-state capture: one API for every step and method that reads or changes hidden states.

- :mod:`brittle.capture.hooks`: the hook vocabulary (residual stream by hidden-state index, MLP
  and other module inputs, module outputs) and its numbering, transformers' ``output_hidden_states``: 0 =
  embeddings, i = output of block i − 1, L = after the final norm.
- :mod:`brittle.capture.accumulators`: streaming reductions (norm sums, last-token states,
  moments, pair differences, energy on a subspace), padding masked.
- :mod:`brittle.capture.cache`: the on-disk cache every activation step reads.
- :mod:`brittle.capture.forward`: the pass that fills it, both models of a comparison in lockstep,
  and :func:`input_energies`, a pass for module inputs too wide to cache (energy on a subspace).
- :mod:`brittle.capture.prompts`: per-prompt states on identical inputs (layer-wise forgetting).

Activation steps call :func:`ensure_captures` and read what one forward pass per (model, split)
produced, so no model is re-run per step or per analysed layer. The one extra pass is step 11's
:func:`input_energies` (one per model and split, all layers at once) for the MLP output
projections, whose d_ff-wide inputs would cost d_ff² per layer and group in the cache.
"""

from brittle.capture.cache import SPLITS, CaptureConfig, Captures, ModelCapture, ModelSpec, PairCapture, cache_root
from brittle.capture.forward import ensure_captures, input_energies, tokenize_texts

__all__ = ["SPLITS", "CaptureConfig", "Captures", "ModelCapture", "ModelSpec", "PairCapture", "cache_root",
           "ensure_captures", "input_energies", "tokenize_texts"]
