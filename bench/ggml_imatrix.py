#!/usr/bin/env python3
"""Importance matrix of the routed experts, as llama.cpp's `llama-imatrix`
collects it: for every expert matrix, the mean over the tokens routed to that
expert of each input column's squared activation - the post-attention-norm
hidden state for gate/up (w1/w3), silu(gate) * up for down (w2), before the
routing weight. ggml's quantize_<fmt>(..., quant_weights) takes it per column.

The forward pass is Hugging Face transformers' (float32, from the model
folder); the experts' inputs are recomputed here from the hooked
post-attention-norm output, the router and the checkpoint's expert weights,
and checked against the hooked MoE block output (max relative difference
printed and required below 1e-4). Calibration: the first TOKENS tokens of the
text (moesz's tokenizer, `moesz tokenize --ids`, no special tokens: what
`compress --calib` uses) in windows of CTX, stride CTX; the perplexity of the
original model on those windows is printed, to compare with moesz's.

  python3 bench/ggml_imatrix.py MODEL CALIB OUT.npz [--tokens 2048] [--ctx 512] [--moesz build/moesz]

OUT.npz: for each expert matrix name (as in the checkpoint), a float32 vector
of its column count; "<name>#tokens" holds the tokens the expert saw (an
expert that saw none gets no entry: quantized without weights).
Needs torch, transformers and numpy.
"""
import argparse, json, math, os, subprocess, sys
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ggml_model_copy import read_safetensors, to_f32  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("out")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--moesz", default="build/moesz")
    args = ap.parse_args()
    import torch
    import transformers
    torch.set_num_threads(2)

    ids = subprocess.run([args.moesz, "tokenize", args.model, "--file", args.calib, "--ids"], check=True,
                         capture_output=True, text=True).stdout.split()
    ids = [int(t) for t in ids[:args.tokens]]
    if len(ids) < 2:
        raise SystemExit("ggml_imatrix: fewer than 2 calibration tokens")

    cfg = json.load(open(os.path.join(args.model, "config.json")))
    n_layers, n_exp, top_k = cfg["num_hidden_layers"], cfg["num_local_experts"], cfg["num_experts_per_tok"]
    w = {}
    for f in sorted(os.listdir(args.model)):
        if f.endswith(".safetensors"):
            header, data = read_safetensors(os.path.join(args.model, f))
            for k, v in header.items():
                if k != "__metadata__" and "block_sparse_moe" in k:
                    a, b = v["data_offsets"]
                    w[k] = to_f32(v["dtype"], data[a:b]).reshape(v["shape"]).astype(np.float64)
    pre = "model.layers.%d.block_sparse_moe."

    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    caught = {}

    def hook(name):
        def f(_mod, _inp, out):
            caught[name] = (out[0] if isinstance(out, tuple) else out).detach().double().numpy()[0]
        return f
    for L, layer in enumerate(model.model.layers):
        layer.post_attention_layernorm.register_forward_hook(hook(("x", L)))
        layer.mlp.register_forward_hook(hook(("moe", L)))

    sums = {}    # name -> sum of squares per column
    counts = {}  # name -> tokens
    nll, scored, worst = 0.0, 0, 0.0
    for s in range(0, len(ids) - 1, args.ctx):
        win = ids[s:s + args.ctx]
        if len(win) < 2:
            break
        with torch.no_grad():
            logits = model(torch.tensor([win])).logits[0].double()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        nll -= float(lp[torch.arange(len(win) - 1), torch.tensor(win[1:])].sum())
        scored += len(win) - 1
        for L in range(n_layers):
            x = caught[("x", L)]                                  # [T, hidden]
            r = x @ w[pre % L + "gate.weight"].T                  # [T, experts]
            top = np.argsort(-r, axis=1)[:, :top_k]
            p = np.exp(r - r.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            out = np.zeros_like(x)
            for e in range(n_exp):
                rows = np.nonzero((top == e).any(axis=1))[0]
                if rows.size == 0:
                    continue
                xe = x[rows]
                w1, w2, w3 = (w[pre % L + "experts.%d.%s.weight" % (e, n)] for n in ("w1", "w2", "w3"))
                g = xe @ w1.T
                h = g / (1 + np.exp(-g)) * (xe @ w3.T)             # [rows, intermediate]
                pe = p[rows, e] / np.take_along_axis(p[rows], top[rows], axis=1).sum(axis=1)
                out[rows] += pe[:, None] * (h @ w2.T)
                for n, a in (("w1", xe), ("w3", xe), ("w2", h)):
                    k = pre % L + "experts.%d.%s.weight" % (e, n)
                    sums[k] = sums.get(k, 0) + (a * a).sum(axis=0)
                    counts[k] = counts.get(k, 0) + rows.size
            ref = caught[("moe", L)]
            worst = max(worst, float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30)))
    if worst > 1e-4:
        raise SystemExit("ggml_imatrix: recomputed MoE output differs from the model's by %.3g (relative)" % worst)
    res = {}
    for k, v in sums.items():
        res[k] = (v / counts[k]).astype(np.float32)
        res[k + "#tokens"] = np.array(counts[k])
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, **res)
    os.replace(tmp, args.out)
    seen = [counts[k] for k in counts if k.endswith(".w1.weight")]
    print(json.dumps({"tokens": len(ids), "scored": scored, "ppl": math.exp(nll / scored), "moe_rel_diff": worst,
                      "experts": len(seen), "expert_tokens_min": int(min(seen)), "expert_tokens_max": int(max(seen))}))


if __name__ == "__main__":
    main()
