"""Unlearning methods and the training loop they share.

- :mod:`brittle.unlearning.registry`: ``METHODS`` and :func:`~brittle.unlearning.registry.get_method`;
- :mod:`brittle.unlearning.profiles`: every method's hyperparameter defaults (no torch import, so
  command-line help can show them);
- :mod:`brittle.unlearning.trainer`: the loop; one module per method (its paper in its docstring);
  :mod:`brittle.unlearning.losses`, :mod:`brittle.unlearning.adversary`, :mod:`brittle.unlearning.lora`;
- :mod:`brittle.unlearning.calibration` (stop at a target validation hazard accuracy) and
  :mod:`brittle.unlearning.calibrated_run` (``unlearn.py --calibrate``).

This package's ``__init__`` imports nothing, so importing the light modules stays light.
"""
