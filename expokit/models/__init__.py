"""models: small PyTorch baselines that train, evaluate and run on expokit datasets.

* :mod:`~expokit.models.base`: tensor and batch conventions, the :class:`Baseline` interface;
* :mod:`~expokit.models.registry`: model names -> classes, imported lazily;
* :mod:`~expokit.models.losses`: masked training losses shared by the baselines;
* :mod:`~expokit.models.checkpoint`: checkpoint folders and ``CheckpointMeta`` (``meta.json``);
  ``load_pretrained(name)``: the shipped weights in ``weights/<name>/`` (package data:
  ``model.safetensors``, ``meta.json``, ``config.json``, ``MODEL_CARD.md``; trained by
  ``scripts/train_shipped_weights.py`` on expokit's generated data);
* :mod:`~expokit.models.data`: loaders over dataset format v1 (pairs, sequences, clips);
* :mod:`~expokit.models.uec`, :mod:`~expokit.models.recnet`, :mod:`~expokit.models.zerodce`,
  :mod:`~expokit.models.video`: the baselines (``expokit train --model NAME``);
* :mod:`~expokit.models.level`: level starts (the input brought to the training targets'
  running level by one gain, on encoded values or on linear light) for ``recnet`` and
  ``zerodce``;
* :mod:`~expokit.models.response`: a learnt camera response curve (the ``"camera"`` start of
  ``uec``) and the sRGB transfer as differentiable torch functions;
* :mod:`~expokit.models.reference`: identity, gain and histogram match to a reference, and the
  oracle gain + gamma (peeking) that every table shows beside the models;
* :mod:`~expokit.models.train`, :mod:`~expokit.models.evaluate`, :mod:`~expokit.models.infer`:
  ``expokit train``, ``expokit eval``, ``expokit infer``;
* :mod:`~expokit.models.evidence`: whether a model's lead over the fair baseline is more
  than the luck of the scenes (per-scene paired differences, a Student-t bound), behind
  ``expokit eval``'s "clearly above" / "NOT CLEARLY" verdict;
* :mod:`~expokit.models.protocol`: the SICE cross-validation protocol with the published anchors.

Importing this package imports nothing heavy; ``torch`` comes with the ``train`` extra.
Documentation: ``docs/models.md``.
"""
