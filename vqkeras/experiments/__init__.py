"""The experiment machinery: YAML configs, models, train / evaluate / predict, report.

Built on the library (``vqkeras.layers``, ``vqkeras.phase``, ``vqkeras.features``,
``vqkeras.metrics``) and on ``vqkeras.data``; the codec reuses its models.
"""
