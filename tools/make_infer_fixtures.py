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

  fuzz/corpus/fuzz_infer/   (--fuzz-seeds) seeds for fuzz/fuzz_infer.c: one tiny
      random model per configuration in FUZZ_CONFIGS (kept in sync with the C
      target), as [config index, selector byte, safetensors bytes].

Usage: python3 tools/make_infer_fixtures.py [--out tests/fixtures] [--fuzz-seeds]
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


def greedy(out, families, prompt_len=5, steps=12):
    """Greedy continuations (full forward per step, stop before EOS) of each
    family fixture's first prompt_len tokens: the oracle for `moesz run
    --temperature 0 --print-ids`."""
    res = {}
    for fam in families:
        d = os.path.join(out, fam)
        model = T.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        toks = [int(t) for t in open(os.path.join(d, "tokens.txt")).read().split()][:prompt_len]
        eos = model.config.eos_token_id
        ids, gen = list(toks), []
        with torch.no_grad():
            for _ in range(steps):
                nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
                if nxt == eos:
                    break
                gen.append(nxt)
                ids.append(nxt)
        res[fam] = {"prompt": toks, "generated": gen}
    with open(os.path.join(out, "infer_greedy.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("greedy:", {k: len(v["generated"]) for k, v in res.items()})


FUZZ_CONFIGS = [
    dict(architectures=["MixtralForCausalLM"], model_type="mixtral", hidden_size=8,
         intermediate_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
         num_local_experts=3, num_experts_per_tok=2, vocab_size=16, max_position_embeddings=32,
         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False),
    dict(architectures=["Qwen2MoeForCausalLM"], model_type="qwen2_moe", hidden_size=8,
         intermediate_size=12, moe_intermediate_size=8, shared_expert_intermediate_size=6,
         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, num_experts=3,
         num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
         qkv_bias=True, vocab_size=16, max_position_embeddings=32, rms_norm_eps=1e-6,
         rope_theta=10000.0, tie_word_embeddings=False, use_sliding_window=False),
    dict(architectures=["OlmoeForCausalLM"], model_type="olmoe", hidden_size=8, intermediate_size=8,
         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, num_experts=3,
         num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=1.5, vocab_size=16,
         max_position_embeddings=32, rms_norm_eps=1e-5, rope_theta=10000.0,
         tie_word_embeddings=False),
    dict(architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", hidden_size=8,
         intermediate_size=12, moe_intermediate_size=8, num_hidden_layers=2, num_attention_heads=2,
         num_key_value_heads=1, head_dim=6, num_experts=3, num_experts_per_tok=2,
         norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], vocab_size=16,
         max_position_embeddings=32, rms_norm_eps=1e-6, rope_theta=10000.0,
         tie_word_embeddings=False),
    dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=8, intermediate_size=12,
         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, vocab_size=16,
         max_position_embeddings=32, rms_norm_eps=1e-5, rope_theta=10000.0,
         tie_word_embeddings=True),
]


def fuzz_seeds(out_dir):
    import tempfile
    os.makedirs(out_dir, exist_ok=True)
    for i, c in enumerate(FUZZ_CONFIGS):
        kw = {k: v for k, v in c.items() if k not in ("architectures", "model_type")}
        cfg = T.AutoConfig.for_model(c["model_type"], **kw)
        cfg.architectures = c["architectures"]
        model = T.AutoModelForCausalLM.from_config(cfg)
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            blob = open(os.path.join(d, "model.safetensors"), "rb").read()
        for sel in (0, 0x83):
            with open(os.path.join(out_dir, "%s_%02x.bin" % (c["model_type"], sel)), "wb") as f:
                f.write(bytes([i, sel]) + blob)
    print("fuzz seeds:", len(FUZZ_CONFIGS) * 2, "in", out_dir)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--fuzz-seeds", action="store_true")
    a = ap.parse_args()
    if a.fuzz_seeds:
        torch.manual_seed(1)
        fuzz_seeds("fuzz/corpus/fuzz_infer")
        return
    torch.manual_seed(0)
    data = os.environ.get("MOESZ_DATA") or "../shared/data"
    stories(a.out, data)
    low_precision(a.out, "olmoe", torch.bfloat16, "bf16")
    low_precision(a.out, "olmoe", torch.float16, "f16")
    greedy(a.out, ["llama", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe"])


if __name__ == "__main__":
    main()
