"""Closed forms of the guidance math (pure torch: no diffusers, no Lightning)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.sampling.cads import anneal_condition, randn_per_sample
from lightning_modules.sampling.ccfg import ccfg_combine, ccfg_weights
from lightning_modules.sampling.cfg import cfg_combine
from lightning_modules.sampling.disc_ds import disc_ds_combine, dynamic_tau
from lightning_modules.sampling.guidance import GuidanceConfig, branch_conditions, guide
from lightning_modules.sampling.schedule import annealing_time, cads_gamma

W = 2.0


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _eps(seed: int, batch: int = 2, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


# --- schedule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "expected"),
    [(0.5, 1.0), (0.9, 0.0), (0.7, 0.5), (0.0, 1.0), (-0.3, 1.0), (1.0, 0.0), (1.7, 0.0)],
)
def test_cads_gamma_closed_form(t: float, expected: float) -> None:
    assert cads_gamma(t, tau1=0.5, tau2=0.9) == pytest.approx(expected, abs=1e-12)


def test_cads_gamma_step_and_invalid_thresholds() -> None:
    assert cads_gamma(0.6, 0.6, 0.6) == 1.0 and cads_gamma(0.61, 0.6, 0.6) == 0.0
    assert cads_gamma(1.0, 1.0, 1.0) == 1.0  # tau1 = tau2 = 1: annealing off
    with pytest.raises(ValueError, match=r"tau1=0\.9, tau2=0\.5"):
        cads_gamma(0.5, 0.9, 0.5)


def test_annealing_time_clocks() -> None:
    assert annealing_time(0, 4, 999, 1000, "steps") == 1.0
    assert annealing_time(3, 4, 250, 1000, "steps") == 0.25
    assert annealing_time(0, 4, 999, 1000, "absolute") == pytest.approx(0.999)
    with pytest.raises(ValueError, match="clock"):
        annealing_time(0, 4, 999, 1000, "bogus")  # type: ignore[arg-type]


# --- CADS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_cads_without_noise_returns_condition(gamma: float) -> None:
    y = torch.randn(2, 77, 8, generator=torch.Generator().manual_seed(0))
    out = anneal_condition(y, gamma, noise_scale=0.0, psi=1.0, generators=_gens(1, 2))
    torch.testing.assert_close(out, y, atol=1e-6, rtol=1e-6)


def test_cads_rescales_per_sample_and_uses_own_generator() -> None:
    y = torch.randn(2, 77, 8, generator=torch.Generator().manual_seed(0))
    y[1] = 50.0 * y[1] + 3.0  # very different statistics per sample
    out = anneal_condition(y, 0.2, noise_scale=0.5, psi=1.0, generators=_gens(1, 2))
    assert not torch.allclose(out, y, atol=1e-3)
    for b in range(2):  # Eq. 6 restores each sample's own mean and std
        torch.testing.assert_close(out[b].mean(), y[b].mean(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out[b].std(), y[b].std(), atol=1e-4, rtol=1e-4)
    alone = anneal_condition(y[1:], 0.2, noise_scale=0.5, psi=1.0, generators=_gens(2))
    torch.testing.assert_close(alone, out[1:])  # depends on its own generator only
    gens = _gens(1, 2)
    first = anneal_condition(y, 0.2, 0.5, 1.0, gens)
    assert not torch.equal(first, anneal_condition(y, 0.2, 0.5, 1.0, gens))  # fresh noise per call


def test_cads_keeps_dtype_and_checks_generators() -> None:
    y = torch.randn(2, 77, 8).half()
    assert anneal_condition(y, 0.5, 0.1, 1.0, _gens(0, 1)).dtype == torch.float16
    with pytest.raises(ValueError, match="one generator per sample"):
        randn_per_sample((3, 4), _gens(0), device="cpu")


# --- CFG, CCFG, DiSC-DS ---------------------------------------------------------------------------


def test_ccfg_weights_at_zero_distance_are_w_and_minus_w() -> None:
    u = _eps(0)
    w_pos, w_neg = ccfg_weights(u, u.clone(), u.clone(), W, tau=0.8)
    torch.testing.assert_close(w_pos, torch.full((2,), W))
    torch.testing.assert_close(w_neg, torch.full((2,), -W))


def test_ccfg_weights_saturate_for_large_distance() -> None:
    u = _eps(0)
    w_pos, w_neg = ccfg_weights(u, u + 10.0, u - 10.0, W, tau=0.8)
    torch.testing.assert_close(w_pos, torch.full((2,), 2 * W))
    torch.testing.assert_close(w_neg, torch.zeros(2))


def test_ccfg_weights_in_float32_for_float16_inputs() -> None:
    u = torch.zeros(1, 4, 8, 8, dtype=torch.float16)
    neg = u + 0.5  # l_neg = tau * 256 * 0.25 = 51.2: exp(-51.2) ~ 6e-23 underflows float16
    _, w_neg = ccfg_weights(u, u, neg, W, tau=0.8)
    assert w_neg.dtype == torch.float32 and w_neg.item() < 0.0
    assert torch.sigmoid(torch.tensor(-51.2, dtype=torch.float16)).item() == 0.0  # what fp16 gives
    assert ccfg_combine(u, u, neg, W, 0.8).dtype == torch.float16


def test_ccfg_norms_are_per_sample_sums() -> None:
    u = torch.zeros(2, 4, 8, 8)
    pos = torch.cat([torch.full((1, 4, 8, 8), 0.01), torch.full((1, 4, 8, 8), 0.05)])
    w_pos, _ = ccfg_weights(u, pos, u, W, tau=0.8)
    l_pos = 0.8 * 256 * torch.tensor([0.01**2, 0.05**2])  # summed over C*H*W = 256, not averaged
    torch.testing.assert_close(w_pos, 2 * W * torch.sigmoid(l_pos))
    assert w_pos[0] != w_pos[1]
    alone, _ = ccfg_weights(u[1:], pos[1:], u[1:], W, tau=0.8)
    torch.testing.assert_close(alone, w_pos[1:])


def test_ccfg_combine_formula() -> None:
    u, pos, neg = _eps(0), _eps(1), _eps(2)
    w_pos, w_neg = ccfg_weights(u, pos, neg, W, 0.01)
    expected = u + w_pos.view(-1, 1, 1, 1) * (pos - u) + w_neg.view(-1, 1, 1, 1) * (neg - u)
    torch.testing.assert_close(ccfg_combine(u, pos, neg, W, 0.01), expected)


def test_disc_ds_alpha_one_is_cfg() -> None:
    u, pos, neg = _eps(0), _eps(1), _eps(2)
    out = disc_ds_combine(u, pos, neg, W, tau=0.8, alpha=1.0, gamma=0.3)
    assert torch.equal(out, cfg_combine(u, pos, W))


def test_disc_ds_dynamic_tau() -> None:
    u, pos, neg = _eps(0), _eps(1), _eps(2, scale=0.1)
    assert dynamic_tau(0.8, 1.0) == 0.8 and dynamic_tau(0.8, 0.25) == pytest.approx(0.4)
    fixed = disc_ds_combine(u, pos, neg, W, tau=0.8, alpha=0.8, gamma=None)
    assert torch.equal(disc_ds_combine(u, pos, neg, W, tau=0.8, alpha=0.8, gamma=1.0), fixed)
    at_zero = disc_ds_combine(u, pos, neg, W, tau=0.8, alpha=0.0, gamma=0.0)  # tau_hat = 0
    torch.testing.assert_close(at_zero, u + W * (pos - u) - W * (neg - u))


# --- GuidanceConfig and dispatch ----------------------------------------------------------------


def test_guide_dispatch() -> None:
    u = _eps(0)
    pos, neg = u + _eps(1, scale=0.05), u + _eps(2, scale=0.05)  # l ~ 0.5: weights not saturated
    cfg = cfg_combine(u, pos, W)
    assert torch.equal(guide(GuidanceConfig(variant="cfg"), u, pos, None, 0.3).eps, cfg)
    assert torch.equal(guide(GuidanceConfig(variant="cads"), u, pos, None, 0.3).eps, cfg)
    ccfg = guide(GuidanceConfig(variant="ccfg", alpha=0.1), u, pos, neg, 0.3).eps
    assert torch.equal(ccfg, ccfg_combine(u, pos, neg, W, 0.8))  # alpha ignored
    fixed = guide(GuidanceConfig(variant="disc_ds_fixed_tau"), u, pos, neg, 0.3).eps
    assert torch.equal(fixed, disc_ds_combine(u, pos, neg, W, 0.8, 0.8, gamma=None))
    dynamic = guide(GuidanceConfig(variant="disc_ds"), u, pos, neg, 0.3).eps
    assert torch.equal(dynamic, disc_ds_combine(u, pos, neg, W, 0.8, 0.8, gamma=0.3))
    assert not torch.equal(dynamic, fixed)
    mean = guide(GuidanceConfig(variant="ccfg", ccfg_norm="mean"), u, pos, neg, 0.3).eps
    assert torch.equal(mean, ccfg_combine(u, pos, neg, W, 0.8, norm="mean"))
    assert not torch.equal(mean, ccfg)


@pytest.mark.parametrize("variant", ["cfg", "cads", "ccfg", "disc_ds", "disc_ds_fixed_tau"])
def test_guided_coefficients_rebuild_the_eps(variant: str) -> None:
    """eps = eps_u + coef_pos (eps_pos - eps_u) + coef_neg (eps_neg - eps_u) for every variant,
    and the recorded CCFG weights are ccfg_weights' on the same predictions."""
    u = _eps(0)
    pos, neg = u + _eps(1, scale=0.05), u + _eps(2, scale=0.05)
    config = GuidanceConfig(variant=variant)
    guided = guide(config, u, pos, neg if config.uses_negative else None, 0.3)
    view = (-1, 1, 1, 1)
    rebuilt = u + guided.coef_pos.view(view) * (pos - u) + guided.coef_neg.view(view) * (neg - u)
    torch.testing.assert_close(guided.eps, rebuilt)
    if not config.uses_negative:
        assert guided.w_neg is None and torch.all(guided.coef_neg == 0)
        return
    tau_hat = dynamic_tau(0.8, 0.3) if variant == "disc_ds" else 0.8
    assert guided.tau_hat == tau_hat
    w_pos, w_neg = ccfg_weights(u, pos, neg, W, tau_hat)
    assert torch.equal(guided.w_pos, w_pos) and torch.equal(guided.w_neg, w_neg)
    share = 1.0 if variant == "ccfg" else 1 - 0.8  # pure CCFG, or (1 - alpha) of DiSC-DS
    torch.testing.assert_close(guided.coef_neg, share * w_neg)


def test_ccfg_norm_mean_is_sum_over_the_element_count() -> None:
    u = _eps(0)
    neg = u + _eps(2, scale=0.05)
    elements = u[0].numel()
    w_sum = ccfg_weights(u, u, neg, W, tau=0.8 / elements, norm="sum")
    w_mean = ccfg_weights(u, u, neg, W, tau=0.8, norm="mean")
    torch.testing.assert_close(w_sum, w_mean)
    with pytest.raises(ValueError, match="norm reduction must be one of"):
        ccfg_weights(u, u, neg, W, tau=0.8, norm="max")


def test_branch_conditions() -> None:
    u, y, n = (torch.randn(2, 77, 8, generator=torch.Generator().manual_seed(s)) for s in range(3))
    plain = branch_conditions(GuidanceConfig(variant="cfg"), u, y, n, 0.0, _gens(0, 1))
    assert torch.equal(plain, torch.cat([u, y]))  # no annealing, negative skipped
    annealed = branch_conditions(GuidanceConfig(variant="disc_ds"), u, y, n, 0.0, _gens(0, 1))
    u_out, y_out, n_out = annealed.chunk(3)
    assert torch.equal(u_out, u) and not torch.equal(y_out, y) and not torch.equal(n_out, n)
    keep_neg = GuidanceConfig(variant="disc_ds", anneal_negative=False, anneal_unconditional=True)
    u_out, _, n_out = branch_conditions(keep_neg, u, y, n, 0.0, _gens(0, 1)).chunk(3)
    assert torch.equal(n_out, n) and not torch.equal(u_out, u)
    with pytest.raises(ValueError, match="needs a negative condition"):
        branch_conditions(GuidanceConfig(variant="ccfg"), u, y, None, 1.0, _gens(0, 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "sdxl"}, "variant"),
        ({"guidance_scale": -1.0}, "guidance_scale must be >= 0.0, got -1.0"),
        ({"tau1": 1.5}, r"tau1 must be in \[0.0, 1.0\], got 1.5"),
        ({"tau1": 0.9, "tau2": 0.5}, "tau1 <= tau2"),
        ({"noise_scale": math.nan}, "noise_scale"),
        ({"psi": 2.0}, "psi"),
        ({"alpha": -0.1}, "alpha"),
        ({"tau": -0.2}, "tau must be"),
        ({"clock": "wall"}, "clock"),
        ({"anneal_negative": 1}, "anneal_negative must be a bool"),
        ({"ccfg_norm": "l1"}, "ccfg_norm must be one of"),
    ],
)
def test_guidance_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GuidanceConfig(**kwargs)


def test_guidance_config_defaults_and_dict() -> None:
    config = GuidanceConfig()
    assert (config.variant, config.guidance_scale, config.tau1, config.tau2) == (
        "disc_ds",
        2,
        0.5,
        0.9,
    )
    assert GuidanceConfig(**config.to_dict()) == config
    assert GuidanceConfig(variant="cfg").num_branches == 2 and config.num_branches == 3
