"""models: PyTorch baselines that train and evaluate on expokit datasets.

Not built yet: no issue has asked for a baseline so far. The dataset format
(:mod:`expokit.curation.dataset`) and the metrics (:mod:`expokit.curation.metrics`, conventions in
``docs/metrics.md``) they will use are in place; ``torch`` comes with the ``train`` extra.
"""
