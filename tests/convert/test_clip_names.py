"""Hugging Face CLIP vision names -> OpenAI's, on a hand-built two-layer state dict."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jreid.convert.clip_names import openai_from_hf
from jreid.errors import WeightsFileError

WIDTH, OUT, LAYERS, TOKENS = 4, 3, 2, 5


def hf_state(seed=0):
  """A CLIPModel-like file: vision tower, projection, and a few text-tower tensors."""
  rng = np.random.default_rng(seed)

  def r(*shape):
    return rng.normal(size=shape).astype(np.float32)

  state = {"vision_model.embeddings.patch_embedding.weight": r(WIDTH, 3, 2, 2),
           "vision_model.embeddings.class_embedding": r(WIDTH),
           "vision_model.embeddings.position_embedding.weight": r(TOKENS, WIDTH),
           "vision_model.embeddings.position_ids": np.arange(TOKENS)[None],
           "vision_model.pre_layrnorm.weight": r(WIDTH), "vision_model.pre_layrnorm.bias": r(WIDTH),
           "vision_model.post_layernorm.weight": r(WIDTH),
           "vision_model.post_layernorm.bias": r(WIDTH),
           "visual_projection.weight": r(OUT, WIDTH),
           "text_model.encoder.layers.0.self_attn.q_proj.weight": r(WIDTH, WIDTH),
           "text_projection.weight": r(OUT, WIDTH), "logit_scale": r()}
  for i in range(LAYERS):
    layer = f"vision_model.encoder.layers.{i}."
    for p in "qkv":
      state[f"{layer}self_attn.{p}_proj.weight"] = r(WIDTH, WIDTH)
      state[f"{layer}self_attn.{p}_proj.bias"] = r(WIDTH)
    state.update({f"{layer}self_attn.out_proj.weight": r(WIDTH, WIDTH),
                  f"{layer}self_attn.out_proj.bias": r(WIDTH),
                  f"{layer}layer_norm1.weight": r(WIDTH), f"{layer}layer_norm1.bias": r(WIDTH),
                  f"{layer}layer_norm2.weight": r(WIDTH), f"{layer}layer_norm2.bias": r(WIDTH),
                  f"{layer}mlp.fc1.weight": r(4 * WIDTH, WIDTH), f"{layer}mlp.fc1.bias": r(4 * WIDTH),
                  f"{layer}mlp.fc2.weight": r(WIDTH, 4 * WIDTH), f"{layer}mlp.fc2.bias": r(WIDTH)})
  return state


def test_names_and_values_follow_openai_clip():
  hf = hf_state()
  out = openai_from_hf(hf)
  renamed = {"visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
             "visual.class_embedding": "vision_model.embeddings.class_embedding",
             "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
             "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
             "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
             "visual.ln_post.weight": "vision_model.post_layernorm.weight",
             "visual.ln_post.bias": "vision_model.post_layernorm.bias"}
  for i in range(LAYERS):
    block, layer = f"visual.transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
    for kind in ("weight", "bias"):
      for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                           ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                           ("mlp.c_proj", "mlp.fc2")):
        renamed[f"{block}{ours}.{kind}"] = f"{layer}{theirs}.{kind}"
      packed = out[f"{block}attn.in_proj_{kind}"]
      assert packed.shape[0] == 3 * WIDTH
      for n, p in enumerate("qkv"):  # rows q, then k, then v
        assert np.array_equal(packed[n * WIDTH:(n + 1) * WIDTH], hf[f"{layer}self_attn.{p}_proj.{kind}"])
  passed = ["text_model.encoder.layers.0.self_attn.q_proj.weight", "text_projection.weight",
            "logit_scale"]
  assert sorted(out) == sorted([*renamed, *passed, "visual.proj"]
                               + [f"visual.transformer.resblocks.{i}.attn.in_proj_{k}"
                                  for i in range(LAYERS) for k in ("weight", "bias")])
  for ours, theirs in renamed.items():
    assert out[ours] is hf[theirs], ours
  for name in passed:
    assert out[name] is hf[name]
  proj = out["visual.proj"]
  assert proj.shape == (WIDTH, OUT)
  assert all(proj[i, j] == hf["visual_projection.weight"][j, i] for i in range(WIDTH) for j in range(OUT))


def test_packed_projection_is_what_torch_multihead_attention_expects():
  """torch's MHA with the packed in_proj equals attention computed from HF's separate q/k/v."""
  hf = hf_state(seed=3)
  out = openai_from_hf(hf)
  layer, block = "vision_model.encoder.layers.1.self_attn.", "visual.transformer.resblocks.1.attn."
  x = torch.from_numpy(np.random.default_rng(4).normal(size=(TOKENS, 1, WIDTH)).astype(np.float32))
  t = {k: torch.from_numpy(v) for k, v in hf.items()}
  mha = torch.nn.MultiheadAttention(WIDTH, 2)
  with torch.no_grad():
    mha.in_proj_weight.copy_(torch.from_numpy(out[block + "in_proj_weight"]))
    mha.in_proj_bias.copy_(torch.from_numpy(out[block + "in_proj_bias"]))
    mha.out_proj.weight.copy_(t[layer + "out_proj.weight"])
    mha.out_proj.bias.copy_(t[layer + "out_proj.bias"])
    got = mha(x, x, x, need_weights=False)[0]
    heads = [F.linear(x[:, 0], t[f"{layer}{p}_proj.weight"], t[f"{layer}{p}_proj.bias"])
             .reshape(TOKENS, 2, WIDTH // 2).transpose(0, 1) for p in "qkv"]
    attended = F.scaled_dot_product_attention(*heads).transpose(0, 1).reshape(TOKENS, WIDTH)
    want = F.linear(attended, t[layer + "out_proj.weight"], t[layer + "out_proj.bias"])
  assert torch.allclose(got[:, 0], want, atol=1e-5)


def test_openai_names_and_a_vision_model_without_projection_pass():
  hf = {k: v for k, v in hf_state().items() if not k.startswith(("visual_projection", "text"))}
  out = openai_from_hf(hf)
  assert "visual.proj" not in out and "visual.conv1.weight" in out
  again = openai_from_hf(out)  # already OpenAI's names: nothing changes
  assert sorted(again) == sorted(out) and all(again[k] is out[k] for k in out)


def test_incomplete_or_inconsistent_attention_is_refused():
  hf = hf_state()
  del hf["vision_model.encoder.layers.1.self_attn.k_proj.weight"]
  with pytest.raises(WeightsFileError, match=r"^clip.safetensors: vision_model.encoder.layers.1.self_attn "
                                             r"has q_proj.weight, v_proj.weight but not k_proj.weight"):
    openai_from_hf(hf, source="clip.safetensors")
  hf = hf_state()
  hf["vision_model.encoder.layers.0.self_attn.v_proj.bias"] = np.zeros(WIDTH + 1, np.float32)
  with pytest.raises(WeightsFileError, match=r"layers.0.self_attn: q/k/v_proj.bias have different "
                                             r"shapes \[\(4,\), \(4,\), \(5,\)\]"):
    openai_from_hf(hf)
  hf = hf_state()
  hf["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"]
  with pytest.raises(WeightsFileError, match="both become visual.conv1.weight"):
    openai_from_hf(hf)
  bias_free = {k: v for k, v in hf_state().items() if not k.endswith("_proj.bias")}
  out = openai_from_hf(bias_free)  # no q/k/v biases at all is consistent: only weights packed
  assert "visual.transformer.resblocks.0.attn.in_proj_bias" not in out
