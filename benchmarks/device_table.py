"""The device suite's JSON as the lines it prints: one per part (a train part: one per dtype)."""
from __future__ import annotations


def _train_rows(name: str, part: dict) -> list[str]:
  lines = []
  for dtype, row in part["dtypes"].items():
    peak = row["peak_device_bytes"]
    crops = f"  ({row['crops_per_s']:.0f} crops/s)" if "crops_per_s" in row else ""
    lines.append(f"  {name:32s} {dtype:9s} {row['images_per_s']:9.1f} img/s  first call "
                 f"{row['first_call_s']:6.1f} s  peak {'-' if peak is None else f'{peak / 2**30:.2f} GiB'}"
                 f"{crops}")
  return lines


def table(result: dict) -> str:
  lines = [f"device suite ({'quick' if result['quick'] else 'full'}) on "
           f"{result['parts'].get('probe', {}).get('device_kind', '?')}"]
  for name, part in result["parts"].items():
    if part["status"] != "ok":
      lines.append(f"  {name:32s} {part['status']} after {part['wall_s']:.0f} s (budget {part['budget_s']:.0f} s)")
      lines += _train_rows(name, part["partial"]) if "dtypes" in part.get("partial", {}) else []
    elif "dtypes" in part:
      lines += _train_rows(name, part)
    elif name == "evaluation":
      lines.append(f"  {name:32s} distance {part['distance']['warm_median_s']:.3f} s (first "
                   f"{part['distance']['first_call_s']:.2f} s), evaluate_rank {part['evaluate_rank']['median_s']:.3f} s")
    elif name == "rerank":
      lines.append(f"  {name:32s} {part['warm_s']:.2f} s warm, {part['first_call_s']:.2f} s first call")
    elif name == "input_pipeline":
      best = max(part["settings"], key=lambda row: row["images_per_s"])
      lines.append(f"  {name:32s} best {best['images_per_s']:.0f} img/s "
                   f"(threads {best['threads']}, workers {best['workers']})")
    elif name == "train_multiprocess":
      lines.append(f"  {name:32s} {part['processes']} processes {part['multi_process']['images_per_s']:.1f} "
                   f"img/s vs one {part['one_process']['images_per_s']:.1f} ({part['devices']}), "
                   f"max loss diff {part['max_loss_diff']:.1e}")
    elif name == "onnx_runtime":
      lines.append(f"  {name:32s} {part['onnxruntime']['images_per_s']:.1f} img/s ({part['provider']}) "
                   f"vs jreid {part['jreid']['images_per_s']:.1f}, max diff {part['max_abs_diff']:.1e}")
    elif name == "train_dcac_jreid":
      lines.append(f"  {name:32s} {part['step_ms']:.1f} ms/step ({part['variant']}, {part['dtype']})")
    else:
      lines.append(f"  {name:32s} {part['backend']} x{part['device_count']}, jax {part['versions']['jax']}, "
                   f"torch {part['versions']['torch']}")
  lines += [f"  {key}: {'-' if value is None else f'{value:.2f}'}" for key, value in result["ratios"].items()]
  return "\n".join(lines)
