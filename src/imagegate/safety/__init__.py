"""Content safety: the input pipeline (fold, term lists, semantic model, remote service),
output moderation (NudeNet) and the labelled data they are measured on.

One module per stage, each behind the small :class:`~imagegate.safety.verdict.Stage`
protocol; :func:`~imagegate.safety.pipeline.build_pipeline` puts them together from the
settings. The models (torch, transformers, onnxruntime) are imported only inside
``semantic.py`` and ``output.py``, and only when first used.
"""
