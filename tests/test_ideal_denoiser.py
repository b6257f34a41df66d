"""The ideal denoiser of an empirical corpus (lightning_modules/diffusion/ideal_denoiser.py)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

from lightning_modules.diffusion.components import SD_V1_SCHEDULER_CONFIG
from lightning_modules.diffusion.ideal_denoiser import (
    corpus_posterior,
    img2img_start,
    partner_share,
)


def _corpus(seed=0, own=7, partner=3, dim=48):
    """Two looks far apart: ``own`` images near +1, ``partner`` images near -1."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([1.0 + 0.1 * rng.standard_normal((own, dim)),
                        -1.0 + 0.1 * rng.standard_normal((partner, dim))])
    return y, np.array([False] * own + [True] * partner)


def test_posterior_is_the_normalised_gaussian_likelihood_of_each_corpus_image():
    rng = np.random.default_rng(1)
    x_t, y, alpha_bar = rng.standard_normal((4, 12)), rng.standard_normal((6, 12)), 0.3
    direct = np.exp(-((x_t[:, None] - alpha_bar**0.5 * y[None]) ** 2).sum(-1)
                    / (2 * (1 - alpha_bar)))
    direct /= direct.sum(1, keepdims=True)
    got = corpus_posterior(torch.as_tensor(x_t), torch.as_tensor(y), alpha_bar).numpy()
    np.testing.assert_allclose(got, direct, rtol=1e-9, atol=1e-12)


def test_from_pure_noise_the_share_is_the_fraction_of_partner_images():
    y, shows = _corpus()
    share = partner_share(y[:2], y, shows, alpha_bar=1e-6, draws=64).mean(0)
    np.testing.assert_allclose(share, 0.3, atol=0.01)


def test_from_a_clean_source_of_its_own_look_the_share_vanishes_and_grows_with_the_noise():
    y, shows = _corpus()
    source = y[:1]
    shares = [float(partner_share(source, y, shows, ab, draws=64).mean())
              for ab in (0.999, 0.05, 0.01, 1e-4)]
    assert shares[0] < 1e-6
    assert shares == sorted(shares) and shares[-1] > 0.25


def test_a_source_of_the_partners_look_goes_to_the_partner():
    y, shows = _corpus()
    shares = partner_share(y[-1:], y, shows, alpha_bar=0.9, draws=8)
    assert shares.shape == (8, 1) and shares.min() > 0.999


def test_the_start_is_the_first_timestep_of_diffusers_img2img():
    scheduler = DPMSolverMultistepScheduler.from_config(SD_V1_SCHEDULER_CONFIG)
    scheduler.set_timesteps(25)
    expected, _ = StableDiffusionImg2ImgPipeline.get_timesteps(
        SimpleNamespace(scheduler=scheduler), 25, 0.8, "cpu")
    t, alpha_bar = img2img_start(dict(SD_V1_SCHEDULER_CONFIG), 25, 0.8)
    assert t == int(expected[0])
    assert alpha_bar == pytest.approx(float(scheduler.alphas_cumprod[t]))


@pytest.mark.parametrize("kwargs, message", [
    ({"shows_partner": np.array([True, False])}, "shows_partner has shape"),
    ({"draws": 0}, "draws=0"),
    ({"alpha_bar": 1.0}, "alpha_bar=1.0"),
])
def test_bad_inputs_are_refused_with_what_was_expected(kwargs, message):
    y, shows = _corpus()
    args = {"sources": y[:1], "corpus": y, "shows_partner": shows, "alpha_bar": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        partner_share(**args)
