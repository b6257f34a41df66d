"""The CADS annealing schedule gamma(t) and the clock that maps a sampler step to t.

Time convention (CADS, Sadat et al., ICLR 2024, Eq. 5): t in [0, 1], t = 1 is pure noise, t = 0
is the clean image. Sampling runs from large t to small t, so gamma goes 0 -> 1: the condition is
heavily noised early and clean late.

The clock is a configuration decision (docs/algorithms.md, CADS):

- ``"steps"`` (default): t = 1 - i / n_run over the model evaluations actually run, so annealing
  acts over the whole run for any img2img strength.
- ``"absolute"``: t = timestep / num_train_timesteps, i.e. the position on the training noise scale
  (an img2img run at strength 0.6 starts near t = 0.6 and therefore never sees t >= tau2).
"""

from __future__ import annotations

from typing import Literal

Clock = Literal["steps", "absolute"]


def cads_gamma(t: float, tau1: float, tau2: float) -> float:
    """CADS schedule gamma(t): 1 below tau1, 0 above tau2, linear in between.

    Notation (CADS Eq. 5):
        t    -> t, the diffusion time in [0, 1] (1 = pure noise)
        tau1 -> tau_1, below it the condition is left clean (gamma = 1)
        tau2 -> tau_2, above it the condition is pure noise (gamma = 0)

        gamma(t) = 1                              if t <= tau_1
                 = (tau_2 - t) / (tau_2 - tau_1)  if tau_1 < t < tau_2
                 = 0                              if t >= tau_2

    Args:
        t: Diffusion time; values outside [0, 1] are allowed and clamp naturally.
        tau1: Lower threshold, ``0 <= tau1 <= tau2 <= 1``.
        tau2: Upper threshold. With ``tau1 == tau2`` the schedule is a step function.

    Returns:
        gamma in [0, 1] as a Python float.

    Raises:
        ValueError: If the thresholds are not ordered inside [0, 1].
    """
    if not 0.0 <= tau1 <= tau2 <= 1.0:
        raise ValueError(f"cads_gamma needs 0 <= tau1 <= tau2 <= 1, got tau1={tau1}, tau2={tau2}")
    if t <= tau1:
        return 1.0
    if t >= tau2:
        return 0.0
    return (tau2 - t) / (tau2 - tau1)


def annealing_time(
    step_index: int,
    num_steps_run: int,
    timestep: float,
    num_train_timesteps: int,
    clock: Clock = "steps",
) -> float:
    """Diffusion time t in [0, 1] of one sampler step, for the CADS schedule.

    Args:
        step_index: Index i of the model evaluation in this run, 0-based.
        num_steps_run: Number n_run of model evaluations in this run (after the img2img start).
        timestep: The scheduler timestep of this step (e.g. 999 ... 20 for SD).
        num_train_timesteps: The scheduler's training horizon (1000 for SD).
        clock: ``"steps"``: t = 1 - i / n_run; ``"absolute"``: t = timestep / num_train_timesteps.

    Returns:
        t as a Python float.

    Raises:
        ValueError: On an unknown clock or an out-of-range step index.
    """
    if not 0 <= step_index < num_steps_run:
        raise ValueError(
            f"step_index must be in [0, num_steps_run={num_steps_run}), got {step_index}"
        )
    if clock == "steps":
        return 1.0 - step_index / num_steps_run
    if clock == "absolute":
        return float(timestep) / num_train_timesteps
    raise ValueError(f"clock must be 'steps' or 'absolute', got {clock!r}")
