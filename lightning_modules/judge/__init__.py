"""The judge of synthetic sets: a classifier that says what a generated image depicts.

On the embedded dataset it is an oracle of class and planted sub-mode
(:class:`~lightning_modules.judge.oracle.EmbeddedJudge`); on Food-101 / VFN-LT any classifier
checkpoint (:class:`~lightning_modules.metric_features.ResNetFeatures`) judges classes only. The
figures over a synthetic set are pure functions in :mod:`lightning_modules.judge.figures`.
"""
