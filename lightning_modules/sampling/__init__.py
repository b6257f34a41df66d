"""Guidance math (pure tensor functions) and the one sampler loop.

The math modules (``schedule``, ``cads``, ``cfg``, ``ccfg``, ``disc_ds``, ``guidance``,
``diagnostics``) import only torch. ``sampler`` needs diffusers-built components at call time
but imports no diffusers at module import.
"""

from .cads import anneal_condition, randn_per_sample
from .ccfg import ccfg_combine, ccfg_weights
from .cfg import cfg_combine
from .diagnostics import GuidanceTrace
from .disc_ds import disc_ds_combine, dynamic_tau
from .guidance import VARIANTS, GuidanceConfig, GuidedPrediction, branch_conditions, guide
from .sampler import make_generators, sample
from .schedule import annealing_time, cads_gamma

__all__ = [
    "VARIANTS",
    "GuidanceConfig",
    "GuidanceTrace",
    "GuidedPrediction",
    "anneal_condition",
    "annealing_time",
    "branch_conditions",
    "cads_gamma",
    "ccfg_combine",
    "ccfg_weights",
    "cfg_combine",
    "disc_ds_combine",
    "dynamic_tau",
    "guide",
    "make_generators",
    "randn_per_sample",
    "sample",
]
