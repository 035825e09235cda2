"""DCAC's condition schemes against numpy, and the gradient each sends back to the logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.models.condition import Condition


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def _setup(scheme, tau=0.6):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5)).astype(np.float32)
  feature = rng.normal(size=(3, 4)).astype(np.float32)
  labels = np.array([1, 4, 0], np.int32)
  module = Condition(num_classes=5, dim=6, scheme=scheme, temperature=tau)
  params = module.init(jax.random.key(0), logits, feature, labels)["params"]
  return module, params, logits, feature, labels


def test_correlation_condition_is_the_probability_weighted_prompt_sum():
  module, params, logits, feature, labels = _setup("correlation", tau=0.6)
  prompts = np.asarray(params["prompts"], np.float64)
  out = module.apply({"params": params}, logits, feature, labels)
  assert out.shape == (3, 1, 6)
  np.testing.assert_allclose(out[:, 0], _softmax(logits / 0.6) @ prompts, rtol=1e-5, atol=1e-6)


def test_prompts_start_standard_normal():
  module = Condition(num_classes=400, dim=768)
  params = module.init(jax.random.key(1), jnp.zeros((1, 400)), jnp.zeros((1, 8)),
                       jnp.zeros((1,), jnp.int32))["params"]
  prompts = np.asarray(params["prompts"])
  assert prompts.shape == (400, 768)
  assert abs(prompts.mean()) < 0.01 and abs(prompts.std() - 1.0) < 0.01


def test_class_condition_keeps_only_the_true_class_probability():
  module, params, logits, feature, labels = _setup("class", tau=1.0)
  prompts = np.asarray(params["prompts"], np.float64)
  probs = _softmax(logits.astype(np.float64))
  expected = probs[np.arange(3), labels][:, None] * prompts[labels]
  out = module.apply({"params": params}, logits, feature, labels)
  np.testing.assert_allclose(out[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_instance_condition_projects_the_feature():
  module, params, logits, feature, labels = _setup("instance")
  assert "prompts" not in params
  dense = params["instance_proj"]
  expected = feature @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
  np.testing.assert_allclose(module.apply({"params": params}, logits, feature, labels)[:, 0],
                             expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scheme", ["correlation", "class"])
def test_the_condition_sends_a_gradient_to_the_logits(scheme):
  """Not detached: the diffusion loss reaches the classifier (and so the encoder) through c."""
  module, params, logits, feature, labels = _setup(scheme)
  grad = jax.grad(lambda z: jnp.sum(module.apply({"params": params}, z, feature, labels) ** 2))(
      jnp.asarray(logits))
  assert np.abs(np.asarray(grad)).max() > 1e-3
  # The analytic gradient of sum(c^2) for the correlation scheme: J_softmax^T (2 c P^T) / tau.
  if scheme == "correlation":
    p = _softmax(logits / 0.6)
    prompts = np.asarray(params["prompts"], np.float64)
    upstream = 2 * (p @ prompts) @ prompts.T
    expected = p * (upstream - np.sum(p * upstream, axis=-1, keepdims=True)) / 0.6
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
