#!/usr/bin/env python3
"""Builds tests/fixtures/tensor/: safetensors files written by the reference
`safetensors` package (torch), which tests/test_tensor.c reads back, and the
rounding oracle for f32 -> bf16/f16 (torch's round-to-nearest-even).

  python3 tools/make_tensor_fixtures.py   # deterministic (fixed seed)
"""
import json, os, struct
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tensor")
os.makedirs(OUT, exist_ok=True)
g = torch.Generator().manual_seed(1234)

# f32 sources that stress rounding: random, exact ties for bf16/f16, subnormals,
# overflow to inf, signed zeros, NaN.
rnd = torch.randn(2000, generator=g) * 3
bits = torch.randint(0, 2**16, (500,), generator=g, dtype=torch.int32)
ties_bf16 = ((bits << 16) | 0x8000).view(torch.float32)          # exactly half-way for bf16
ties_f16 = (torch.arange(1, 501, dtype=torch.float32) + 0.5) * 2**-10  # f16 half-ulp cases
sub = torch.tensor([1e-8, -3e-8, 5.96e-8, 2.98e-8, 6.1e-5, 6.09e-5, 1e-40, -1e-45], dtype=torch.float32)
edge = torch.tensor([0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e30, -1e30, 3.4e38,
                     float("inf"), float("-inf")], dtype=torch.float32)
src = torch.cat([rnd, ties_bf16, ties_f16, sub, edge])
src = src[torch.isfinite(src) | torch.isinf(src)]  # NaN handled separately (payload rules differ)

tensors = {
    "src_f32": src.contiguous(),
    "src_as_bf16": src.to(torch.bfloat16),
    "src_as_f16": src.to(torch.float16),
    "bf16_as_f32": src.to(torch.bfloat16).to(torch.float32),
    "f16_as_f32": src.to(torch.float16).to(torch.float32),
    "all_f16_bits": torch.arange(0, 65536, dtype=torch.int32).to(torch.int16).view(torch.float16),
    "i8": torch.arange(-5, 5, dtype=torch.int8).reshape(2, 5),
    "u8": torch.arange(0, 6, dtype=torch.uint8),
    "i32": torch.tensor([[1, -2], [3, -4]], dtype=torch.int32),
    "i64": torch.tensor([2**40, -7], dtype=torch.int64),
    "f64": torch.tensor([0.1, -2.5], dtype=torch.float64),
    "scalar": torch.tensor(3.5, dtype=torch.float32),
    "empty": torch.zeros(0, 4, dtype=torch.float32),
    "model.layers.0.mlp.weight": torch.randn(3, 4, 5, generator=g),
}
tensors["all_f16_as_f32"] = tensors["all_f16_bits"].to(torch.float32)
save_file(tensors, os.path.join(OUT, "mixed.safetensors"), metadata={"format": "pt", "note": "moesz fixture"})

# A sharded checkpoint with an index.
shard_dir = os.path.join(OUT, "sharded")
os.makedirs(shard_dir, exist_ok=True)
a = {"embed.weight": torch.randn(8, 4, generator=g), "norm.weight": torch.ones(4)}
b = {"lm_head.weight": torch.randn(8, 4, generator=g).to(torch.bfloat16)}
save_file(a, os.path.join(shard_dir, "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
save_file(b, os.path.join(shard_dir, "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
wm = {k: "model-00001-of-00002.safetensors" for k in a}
wm.update({k: "model-00002-of-00002.safetensors" for k in b})
with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f, indent=1, sort_keys=True)
print("wrote", OUT)
