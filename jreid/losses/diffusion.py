"""DDPM training pieces (Ho et al., 2020) as DCAC trains its Stable Diffusion UNet: epsilon prediction.

One step: the frozen VAE's posterior (mean, logvar) -> `sample_latent`;
t ~ `sample_timesteps`; x_t = `add_noise`(latent, eps, t, abar); the UNet
predicts eps from (x_t, t, condition); loss = `noise_prediction_loss`.
The schedule is Stable Diffusion's "scaled_linear" one (betas linear in
sqrt(beta), 8.5e-4 to 0.012 over 1000 steps), the one SD-1.5 was trained with
and DCAC keeps. Schedules are constants: computed once in float64 on the
host, stored float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SD_LATENT_SCALING = 0.18215  # SD-1.x's VAE scaling factor: unit-variance latents for the UNet


def scaled_linear_betas(num_steps: int = 1000, start: float = 8.5e-4, end: float = 0.012) -> jax.Array:
  """betas = linspace(sqrt(start), sqrt(end), num_steps)^2 (float64, returned float32)."""
  return jnp.asarray(np.linspace(start ** 0.5, end ** 0.5, num_steps, dtype=np.float64) ** 2, jnp.float32)


def alphas_cumprod(betas) -> jax.Array:
  """abar_t = prod_{s <= t} (1 - beta_s), the signal fraction of x_t; a host-side constant."""
  return jnp.asarray(np.cumprod(1 - np.asarray(betas, np.float64)), jnp.float32)


def add_noise(x0: jax.Array, noise: jax.Array, timesteps: jax.Array, alphas_cumprod: jax.Array) -> jax.Array:
  """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per example (batch first, any layout after).

  Computed in float32 and returned in x0's dtype.
  """
  abar = jnp.asarray(alphas_cumprod, jnp.float32)[timesteps]
  abar = abar.reshape(abar.shape + (1,) * (x0.ndim - abar.ndim))
  noisy = jnp.sqrt(abar) * x0.astype(jnp.float32) + jnp.sqrt(1 - abar) * noise.astype(jnp.float32)
  return noisy.astype(x0.dtype)


def sample_latent(mean: jax.Array, logvar: jax.Array, rng: jax.Array,
                  scaling: float = SD_LATENT_SCALING) -> jax.Array:
  """A draw from the VAE's diagonal Gaussian posterior, times the latent scaling factor.

  logvar is clipped to [-30, 20] as diffusers' DiagonalGaussianDistribution
  does (a saturated encoder output must not give an infinite or zero std).
  DCAC samples (posterior.sample()) rather than taking the mean.
  """
  logvar = jnp.clip(logvar.astype(jnp.float32), -30.0, 20.0)
  eps = jax.random.normal(rng, mean.shape, jnp.float32)
  return (mean.astype(jnp.float32) + jnp.exp(0.5 * logvar) * eps) * scaling


def sample_timesteps(rng: jax.Array, batch: int, num_steps: int = 1000) -> jax.Array:
  """t ~ U{0, ..., num_steps - 1} per example (int32)."""
  return jax.random.randint(rng, (batch,), 0, num_steps, jnp.int32)


def noise_prediction_loss(pred: jax.Array, noise: jax.Array) -> jax.Array:
  """Plain mean squared error between predicted and true noise, in float32 (no SNR weighting)."""
  return jnp.mean(jnp.square(pred.astype(jnp.float32) - noise.astype(jnp.float32)))
