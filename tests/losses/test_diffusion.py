"""DDPM pieces against torch diffusers' DDPMScheduler and DiagonalGaussianDistribution, and by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jreid.losses import diffusion


@pytest.fixture(scope="module")
def scheduler():
  from diffusers import DDPMScheduler
  return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                       beta_end=0.012)


def test_scaled_linear_schedule_matches_diffusers(scheduler):
  betas = diffusion.scaled_linear_betas()
  abar = diffusion.alphas_cumprod(betas)
  assert betas.shape == abar.shape == (1000,) and betas.dtype == abar.dtype == jnp.float32
  # diffusers forms both in float32, its cumprod drifting over the 1000 steps; ours in float64.
  # Measured: betas 1.9e-9 apart (2.3e-7 relative), alphas_cumprod 4.8e-7.
  np.testing.assert_allclose(betas, scheduler.betas.numpy(), rtol=1e-6, atol=0)
  np.testing.assert_allclose(abar, scheduler.alphas_cumprod.numpy(), atol=1e-6, rtol=0)
  assert float(betas[0]) == pytest.approx(8.5e-4, rel=1e-6)
  assert float(betas[-1]) == pytest.approx(0.012, rel=1e-6)


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (3, 5, 6, 4), (3, 7)])  # NCHW, NHWC, flat
def test_add_noise_matches_diffusers_on_any_layout(scheduler, shape):
  rng = np.random.default_rng(0)
  x0, noise = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
  timesteps = np.array([0, 517, 999])
  want = scheduler.add_noise(*map(torch.from_numpy, (x0, noise, timesteps))).numpy()
  abar = diffusion.alphas_cumprod(diffusion.scaled_linear_betas())
  got = diffusion.add_noise(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(timesteps), abar)
  assert got.shape == shape and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)  # measured 8.3e-7 (the abar drift)
  half = diffusion.add_noise(jnp.asarray(x0, jnp.bfloat16), jnp.asarray(noise), jnp.asarray(timesteps), abar)
  assert half.dtype == jnp.bfloat16


def test_sample_latent_is_diffusers_posterior_sample_with_the_same_noise(monkeypatch):
  from diffusers.models.autoencoders import vae
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
  logvar = rng.uniform(-3, 3, size=mean.shape).astype(np.float32)
  logvar[0, 0, 0, :] = [-45.0, 25.0, 19.0]  # the clip: below -30, above 20, inside
  key = jax.random.key(7)
  eps = np.array(jax.random.normal(key, mean.shape, jnp.float32))  # the draw sample_latent makes
  monkeypatch.setattr(vae, "randn_tensor", lambda shape, **_: torch.from_numpy(eps).reshape(shape))
  posterior = vae.DiagonalGaussianDistribution(torch.from_numpy(np.concatenate([mean, logvar], axis=1)))
  want = posterior.sample().numpy() * 0.18215  # DCAC: latents = posterior.sample() * 0.18215
  got = diffusion.sample_latent(jnp.asarray(mean), jnp.asarray(logvar), key)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)  # measured 3e-8 abs, 2e-7 relative
  by_hand = (mean[0, 0, 0, 1] + np.exp(10.0) * eps[0, 0, 0, 1]) * 0.18215  # logvar 25 -> 20
  assert float(got[0, 0, 0, 1]) == pytest.approx(by_hand, rel=1e-6)


def test_sample_latent_statistics():
  mean = jnp.full((20000,), 1.5)
  logvar = jnp.full((20000,), np.log(0.25))  # std 0.5
  draws = np.asarray(diffusion.sample_latent(mean, logvar, jax.random.key(0), scaling=1.0))
  assert abs(draws.mean() - 1.5) < 0.02 and abs(draws.std() - 0.5) < 0.01  # > 4 standard errors each


def test_sample_timesteps_cover_0_to_999_uniformly():
  t = np.asarray(diffusion.sample_timesteps(jax.random.key(0), 100_000))
  assert t.shape == (100_000,) and t.dtype == np.int32 and t.min() == 0 and t.max() == 999
  counts = np.bincount(t // 100, minlength=10)  # 10 bins of 10,000 expected, sd ~95
  assert np.all(np.abs(counts - 10_000) < 500)
  assert not np.array_equal(t[:64], np.asarray(diffusion.sample_timesteps(jax.random.key(1), 64)))


def test_noise_prediction_loss_is_plain_mse():
  pred = jnp.array([[1.0, 2.0], [3.0, 4.0]], jnp.bfloat16)
  noise = jnp.array([[0.0, 2.0], [1.0, 8.0]])
  loss = diffusion.noise_prediction_loss(pred, noise)
  assert loss.dtype == jnp.float32 and float(loss) == (1 + 0 + 4 + 16) / 4
