"""DINO's `checkpoint.pth` (main_dino.py's layout) read safely, the teacher chosen."""
import argparse

import numpy as np
import pytest
import torch

from jreid.convert import load
from jreid.errors import WeightsFileError


def backbone(seed):
  generator = torch.Generator().manual_seed(seed)
  return {"cls_token": torch.randn(1, 1, 4, generator=generator),
          "pos_embed": torch.randn(1, 5, 4, generator=generator),
          "patch_embed.proj.weight": torch.randn(4, 3, 2, 2, generator=generator),
          "blocks.0.attn.qkv.weight": torch.randn(12, 4, generator=generator)}


def head(seed):
  generator = torch.Generator().manual_seed(seed)
  return {"mlp.0.weight": torch.randn(6, 4, generator=generator),
          "last_layer.weight_g": torch.ones(10, 1), "last_layer.weight_v": torch.randn(10, 6)}


def dino_checkpoint(*, student=True, teacher=True):
  """As main_dino.py saves it: the student DDP-wrapped (`module.`), the teacher not."""
  parameters = [torch.nn.Parameter(torch.zeros(3))]
  optimizer = torch.optim.AdamW(parameters)
  parameters[0].grad = torch.ones(3)
  optimizer.step()
  content = {"optimizer": optimizer.state_dict(), "epoch": 100,
             "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=65536,
                                        norm_last_layer=True, lr=0.0005, local_crops_scale=(0.05, 0.4),
                                        data_path="/data/LUPerson", seed=0, momentum_teacher=0.996,
                                        output_dir=".", fp16_scaler=None),
             "dino_loss": {"center": torch.zeros(1, 10)}, "fp16_scaler": None}
  if student:
    content["student"] = {**{f"module.backbone.{k}": v for k, v in backbone(1).items()},
                          **{f"module.head.{k}": v for k, v in head(2).items()}}
  if teacher:
    content["teacher"] = {**{f"backbone.{k}": v for k, v in backbone(3).items()},
                          **{f"head.{k}": v for k, v in head(4).items()}}
  return content


def arrays(tensors):
  return {k: v.numpy() for k, v in tensors.items()}


def same(got, want):
  return sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_the_teacher_is_read_from_a_dino_checkpoint(tmp_path):
  content = dino_checkpoint()
  torch.save(content, tmp_path / "checkpoint.pth")
  with pytest.raises(Exception, match="argparse.Namespace"):  # what plain weights_only does
    torch.load(tmp_path / "checkpoint.pth", weights_only=True)
  tensors = load.read_state_dict(tmp_path / "checkpoint.pth")
  assert same(tensors, arrays(content["teacher"]))
  assert not np.array_equal(tensors["backbone.cls_token"],
                            content["student"]["module.backbone.cls_token"].numpy())
  # backbone. is a stripped wrapper; head.* stays as it is (a ViT has no such variable: unused).
  assert load.strip_prefixes("backbone.blocks.0.attn.qkv.weight") == "blocks.0.attn.qkv.weight"
  assert load.strip_prefixes("module.backbone.cls_token") == "cls_token"
  assert load.strip_prefixes("head.last_layer.weight_g") == "head.last_layer.weight_g"
  # The Namespace was allowed for that call only.
  assert argparse.Namespace not in torch.serialization.get_safe_globals()


def test_a_checkpoint_with_only_the_student_gives_the_student(tmp_path):
  content = dino_checkpoint(teacher=False)
  torch.save(content, tmp_path / "student_only.pth")
  assert same(load.read_state_dict(tmp_path / "student_only.pth"), arrays(content["student"]))


class TrainerConfig:
  def __init__(self):
    self.lr = 0.1


def test_other_pickled_classes_are_still_refused(tmp_path):
  content = dino_checkpoint()
  content["args"] = TrainerConfig()
  torch.save(content, tmp_path / "custom.pth")
  with pytest.raises(WeightsFileError) as info:
    load.read_state_dict(tmp_path / "custom.pth")
  message = str(info.value)
  assert "\n" not in message and "custom.pth" in message
  assert "Unsupported global: GLOBAL " + __name__ + ".TrainerConfig" in message
  # Inside a Namespace too: the allowance is for the Namespace, not for what it holds.
  content["args"] = argparse.Namespace(config=TrainerConfig())
  torch.save(content, tmp_path / "nested.pth")
  with pytest.raises(WeightsFileError, match=r"nested.pth.*GLOBAL .*TrainerConfig was not an allowed"):
    load.read_state_dict(tmp_path / "nested.pth")
