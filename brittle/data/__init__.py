"""Datasets: the synthetic tiny world, loaders for the Hub datasets (WMDP-Bio, WikiText-2, TOFU),
and the writer of the ``data/<preset>/`` folder every later step reads.

Each Hub loader takes ``local_dir``: a folder holding the same files as the published copies
(see each module), so the same code path runs offline.
"""
