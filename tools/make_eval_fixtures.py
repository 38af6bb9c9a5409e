#!/usr/bin/env python3
"""Expected perplexity, KL / top-1 and continuation log-likelihoods from
transformers, for tests/test_eval.c (tests/fixtures/eval/expected.json).

Pairs (model, reference) of tiny fixtures with the same vocabulary: mixtral vs
olmoe (unrelated: large KL) and qwen3_moe_bf16 vs qwen3_moe (the same weights in
BF16 and F32: small KL, high top-1), on the 64 fixture tokens.
Perplexity follows the Hugging Face perplexity guide (sliding windows, each
window scores the tokens the previous one did not), token-weighted.

  python3 tools/make_eval_fixtures.py
"""
import json, math, os
import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double()


def main():
    load = lambda name: AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, name), dtype=torch.float32).eval()
    ids = [int(x) for x in open(os.path.join(ROOT, "mixtral", "tokens.txt")).read().split()]
    out = {"tokens": ids, "cases": []}
    pairs = [("mixtral", "olmoe", 16, 8), ("mixtral", "olmoe", 16, 16), ("mixtral", "olmoe", 24, 5),
             ("mixtral", "olmoe", 64, 64), ("qwen3_moe_bf16", "qwen3_moe", 16, 8)]
    for mname, rname, ctx, stride in pairs:
        m, r = load(mname), load(rname)
        nll, n, kl, agree, prev_end = 0.0, 0, 0.0, 0, 0
        for begin in range(0, len(ids), stride):
            end = min(begin + ctx, len(ids))
            lm = torch.log_softmax(logits(m, ids[begin:end]), -1)
            lr = torch.log_softmax(logits(r, ids[begin:end]), -1)
            for t in range(max(prev_end, begin + 1), end):
                row = t - 1 - begin
                nll -= lm[row, ids[t]].item()
                kl += (lr[row].exp() * (lr[row] - lm[row])).sum().item()
                agree += int(lm[row].argmax() == lr[row].argmax())
                n += 1
            prev_end = end
            if end == len(ids):
                break
        out["cases"].append({"model": mname, "ref": rname, "ctx": ctx, "stride": stride, "tokens": n, "nll": nll, "ppl": math.exp(nll / n),
                             "kl": kl / n, "top1": agree / n})
    # log-likelihood of a continuation after a context
    m = load("mixtral")
    ctx_ids, cont = ids[:20], ids[20:27]
    lm = torch.log_softmax(logits(m, ctx_ids + cont[:-1]), -1)
    ll = sum(lm[len(ctx_ids) - 1 + j, cont[j]].item() for j in range(len(cont)))
    greedy = all(int(lm[len(ctx_ids) - 1 + j].argmax()) == cont[j] for j in range(len(cont)))
    out["loglik"] = {"ctx": ctx_ids, "cont": cont, "ll": ll, "greedy": greedy}
    with open(os.path.join(ROOT, "eval", "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["cases"]))


if __name__ == "__main__":
    main()
