"""A jreid run's test-feature function as an ONNX model (`jreid.tools.export --format onnx`).

    python -m jreid.tools.export --checkpoint WORKDIR --out model.onnx

`run_features(config, variables)` is the function, `to_onnx` converts it and
`write_onnx` writes the file; the tool reads the run (config.json and
checkpoint) and calls them.

The graph is what the run's evaluation computes for one batch: the method's
test feature (`FEATURES`: the model's `test_feature`, or the pooled backbone
feature for DINO / UP-ReID pre-training), in eval mode, BN with its running
statistics, the pooling and neck the run's config.json names; not
L2-normalised (evaluation normalises for cosine distance). It always
computes in float32, also for a run trained in bfloat16.

Input `images`: (batch, 3, height, width) float32, NCHW, the batch dynamic;
RGB resized to the run's `data.height` x `data.width` (bilinear) and
normalised as `(pixels / 255 - data.mean) / data.std`. NCHW because that is
what ONNX consumers (and FastReID's / torchvision's preprocessing) hand over;
the graph transposes to jreid's NHWC itself. Output `features`: (batch, D).
The model's metadata (`metadata_props`) records the size, mean, std and
layout, so a deployment reads them from the file.

Route: jax2onnx converts jreid's own JAX function, so the ONNX graph is the
evaluated function itself and no second (PyTorch) implementation of every
architecture has to be kept in step (the other route: jreid's torch export
plus torch.onnx, which needs a torch module per family and option). Two
workarounds keep jax2onnx 0.17.1's output runnable by onnxruntime:

* `lax.reduce_window_max` (the ResNet stem's max pool, ceil mode as -inf
  padding) becomes an ONNX MaxPool over all four axes, which onnxruntime
  refuses ("Unsupported pooling size"). The function is traced to a jaxpr
  first and every such window max is rewritten as the maximum of its strided
  slices over -inf edges (`_max_of_slices`: exact, the same numbers).
* Convolutions run as `conv_impl="dot_1x1"` (1x1 convs as matrix products,
  the same function, `jreid.models.dot_conv`): jax2onnx's NCHW layout pass
  mis-shapes a BatchNorm that follows an XLA 1x1 conv into a residual sum.
"""
from __future__ import annotations

import itertools
import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
from jax import lax
from jax.extend import core as jax_core

from jreid.convert import export
from jreid.errors import CheckpointMismatchError, ConfigError, WeightsFileError

SUFFIX = ".onnx"
INPUT, OUTPUT = "images", "features"
BATCH = "batch"  # the symbolic batch dimension's name in the graph
OPSET = 23  # jax2onnx 0.17.1 writes opset-18+ operators (ReduceMean with axes as an input) either way

# Backbone families whose every operation converts (jreid.models.backbones.FAMILIES); ResNeSt's
# average pools go through flax's `nn.avg_pool`, which jax2onnx replaces with a version that
# takes no explicit padding.
FAMILIES = ("resnet", "vit", "vit_ics", "clip")

# What each method's `features` hook returns (jreid.methods.*): None is the model's own output
# (`config.model.test_feature`), "pre_neck" the pooled backbone feature of the pre-training
# methods (DINO: of the teacher, which `RunVariables.released` picks). A method missing here
# is refused by name rather than exported with a guessed feature.
FEATURES = {"supervised": None, "distill": None, "dasa": None, "cluster_contrast": None,
            "dcac": None, "dino": "pre_neck", "upreid": "pre_neck"}


def import_jax2onnx():
  try:
    import jax2onnx
  except ImportError:
    raise WeightsFileError("writing .onnx needs onnx and jax2onnx: pip install 'jreid[onnx]' "
                           "&& pip install --no-deps jax2onnx==0.17.1") from None
  # Its plugins for other libraries (equinox, dm-pix) fail to import without them and say so
  # at WARNING level; jreid needs none of them.
  logging.getLogger("jax2onnx").setLevel(logging.ERROR)
  return jax2onnx


def _max_of_slices(x, *, window_dimensions, window_strides, padding, base_dilation,
                   window_dilation):
  """`lax.reduce_window_max` as the maximum of strided slices of x padded with -inf: the same
  values, in operations (Concat, Slice, Max) every ONNX runtime runs for any rank."""
  if any(d != 1 for d in (*base_dilation, *window_dilation)):
    raise ConfigError("ONNX export: a dilated max pool has no rewrite; jreid's models use none")
  axes = [axis for axis, (size, stride, pad) in
          enumerate(zip(window_dimensions, window_strides, padding))
          if (size, stride, tuple(pad)) != (1, 1, (0, 0))]
  for axis in axes:
    low, high = padding[axis]
    # -inf edges made from x itself (lax.pad has no jax2onnx lowering for a symbolic batch).
    edge = jnp.minimum(lax.slice_in_dim(x, 0, 1, axis=axis), -jnp.inf)
    x = jnp.concatenate([edge] * low + [x] + [edge] * high, axis=axis)
  out = None
  for offsets in itertools.product(*(range(window_dimensions[axis]) for axis in axes)):
    part = x
    for axis, offset in zip(axes, offsets):
      size, stride = window_dimensions[axis], window_strides[axis]
      count = (x.shape[axis] - size) // stride + 1
      part = lax.slice_in_dim(part, offset, offset + (count - 1) * stride + 1, stride, axis)
    out = part if out is None else lax.max(out, part)
  return out


# Higher-order primitives whose body is evaluated inline (so a window max inside is rewritten too).
_BODIES = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr",
           "custom_vjp_call": "call_jaxpr", "custom_jvp_call": "call_jaxpr"}


def _evaluate(jaxpr, consts, *args):
  """Evaluates a jaxpr, window maxes rewritten (`_max_of_slices`), custom-VJP/JVP bodies inlined
  (their forward is what an inference graph needs)."""
  env = {}
  read = lambda v: v.val if isinstance(v, jax_core.Literal) else env[v]
  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    values = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "reduce_window_max":
      outs = [_max_of_slices(*values, **eqn.params)]
    elif name in _BODIES:
      body = eqn.params.get(_BODIES[name]) or eqn.params.get("fun_jaxpr")
      outs = _evaluate(body.jaxpr, body.consts, *values)
    else:
      outs = eqn.primitive.bind(*values, **eqn.params)
      outs = outs if eqn.primitive.multiple_results else [outs]
    env.update(zip(eqn.outvars, outs))
  return [read(v) for v in jaxpr.outvars]


def exportable(features_fn):
  """`features_fn` (NHWC images -> features) as the graph's function of NCHW images, traced and
  rewritten for ONNX (inside jax2onnx's trace, so the batch stays symbolic)."""
  def nchw_features(images):
    nhwc = jnp.transpose(images, (0, 2, 3, 1))
    closed = jax.make_jaxpr(features_fn)(nhwc)
    return _evaluate(closed.jaxpr, closed.consts, nhwc)[0]
  return nchw_features


def to_onnx(features_fn, height: int, width: int, *, metadata: dict | None = None):
  """The ONNX `ModelProto` of `features_fn` on (batch, 3, height, width) inputs, batch dynamic."""
  jax2onnx = import_jax2onnx()
  model = jax2onnx.to_onnx(exportable(features_fn), [(BATCH, 3, height, width)],
                           model_name="jreid_features", opset=OPSET, input_names=[INPUT],
                           output_names=[OUTPUT], return_mode="proto")
  # Intermediate shape annotations are hints, and jax2onnx's layout pass leaves some in the wrong
  # layout (onnxruntime warns on loading); it infers its own without them.
  model.graph.ClearField("value_info")
  for key, value in (metadata or {}).items():
    model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
  return model


def write_onnx(model, out: str | pathlib.Path) -> pathlib.Path:
  """Writes a ModelProto through a temporary file in the target folder, then renames it."""
  import onnx
  out = pathlib.Path(out).expanduser()
  if out.suffix != SUFFIX:
    raise WeightsFileError(f"an ONNX model is written to a {SUFFIX} file, not {out.name}")
  export._write(out, model, lambda proto, path: onnx.save_model(proto, path))
  return out


def _num_classes(params) -> int:
  """The identities of the model's classifier(s) (every branch shares them); 0 without one."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  counts = {leaf.shape[-1] for path, leaf in flat
            if [getattr(k, "key", None) for k in path[-2:]] == ["classifier", "kernel"]}
  if len(counts) > 1:
    raise CheckpointMismatchError(f"the classifiers hold different class counts {sorted(counts)}")
  return counts.pop() if counts else 0


def run_features(config: ml_collections.ConfigDict, variables: dict):
  """(NHWC images -> features) of the released model of a run with `config`, and its metadata."""
  method = config.method
  if method not in FEATURES:
    raise ConfigError(f"method {method!r} has no ReID test feature to export as ONNX; exportable "
                      f"methods are {sorted(FEATURES)}")
  from jreid.models.backbones import BACKBONES, family_of  # flax models, imported when used
  from jreid.models.reid import build_model
  name = config.model.backbone.name
  family_of(name)  # an unknown name is a ConfigError naming the known ones
  if BACKBONES[name].family not in FAMILIES:
    supported = sorted(n for n, entry in BACKBONES.items() if entry.family in FAMILIES)
    raise ConfigError(f"model.backbone.name={name!r} has no ONNX export (its family "
                      f"{BACKBONES[name].family!r} uses operations jax2onnx cannot convert); "
                      f"exportable backbones: {supported}")
  model_cfg = ml_collections.ConfigDict(config.model.to_dict())
  if "conv_impl" in model_cfg.backbone:
    model_cfg.backbone.conv_impl = "dot_1x1"  # the module docstring says why
  num_classes = _num_classes(variables["params"])
  model = build_model(model_cfg, max(num_classes, 1), classifier=num_classes > 0)
  pick = FEATURES[method]
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats") or {}}

  def features(images):
    feature, outputs = model.apply(variables, images, train=False)
    return (feature if pick is None else outputs[pick]).astype(jnp.float32)

  data = config.data
  metadata = {"layout": "NCHW", "height": data.height, "width": data.width,
              "mean": list(data.mean), "std": list(data.std), "pixels": "RGB / 255",
              "method": method, "backbone": config.model.backbone.name,
              "feature": pick or config.model.test_feature}
  return features, metadata
