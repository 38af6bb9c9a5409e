#!/usr/bin/env python3
"""Builds the inference engine's extra fixtures (oracle: transformers).

  tests/fixtures/stories260K/   tokens.txt (16 ids), logits.f32 [16, 512]
      for the real tiny Llama in $MOESZ_DATA/models/stories260K-llama
      (default ../shared/data); the model itself is read from the shared data,
      never copied.
  tests/fixtures/olmoe_bf16/, tests/fixtures/olmoe_f16/
      the OLMoE fixture's weights stored as BF16 / F16 (round to nearest
      even), with transformers' float32 logits computed on the rounded
      weights (upcast), so the engine's BF16/F16 kernels, which compute in
      f32, must match them as tightly as the F32 fixtures.

Usage: python3 tools/make_infer_fixtures.py [--out tests/fixtures]
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch
from safetensors.torch import load_file, save_file
import transformers as T

SEQ_STORIES = 16


def write(d, toks, logits):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokens.txt"), "w") as f:
        f.write(" ".join(str(t) for t in toks) + "\n")
    logits.astype("<f4").tofile(os.path.join(d, "logits.f32"))


def stories(out, data):
    src = os.path.join(data, "models", "stories260K-llama")
    if not os.path.isdir(src):
        print("skip stories260K: %s absent" % src)
        return
    model = T.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    g = np.random.default_rng(260)
    toks = [1] + [int(t) for t in g.integers(3, 512, size=SEQ_STORIES - 1)]
    with torch.no_grad():
        logits = model(torch.tensor([toks])).logits[0].float().numpy()
    d = os.path.join(out, "stories260K")
    write(d, toks, logits)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"model": "stories260K-llama (shared data)", "oracle": "transformers " + T.__version__,
                   "seq": SEQ_STORIES, "vocab": 512,
                   "argmax": [int(a) for a in logits.argmax(-1)]}, f, indent=1)
    print("stories260K: logits max |x| %.3f" % np.abs(logits).max())


def low_precision(out, family, dtype, tag):
    src = os.path.join(out, family)
    d = os.path.join(out, family + "_" + tag)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), d)
    sd = load_file(os.path.join(src, "model.safetensors"))
    low = {k: v.to(dtype).contiguous() for k, v in sd.items()}
    save_file(low, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    toks = [int(t) for t in open(os.path.join(src, "tokens.txt")).read().split()]
    model = T.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    # the rounded weights, upcast: check transformers loaded exactly them
    for k, v in model.state_dict().items():
        if k in low:
            assert torch.equal(v, low[k].float()), k
    with torch.no_grad():
        logits = model(torch.tensor([toks])).logits[0].float().numpy()
    write(d, toks, logits)
    print("%s: %s weights, logits max |x| %.3f" % (d, tag, np.abs(logits).max()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    a = ap.parse_args()
    torch.manual_seed(0)
    data = os.environ.get("MOESZ_DATA") or "../shared/data"
    stories(a.out, data)
    low_precision(a.out, "olmoe", torch.bfloat16, "bf16")
    low_precision(a.out, "olmoe", torch.float16, "f16")


if __name__ == "__main__":
    main()
