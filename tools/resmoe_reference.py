#!/usr/bin/env python3
"""Reference barycenters with POT (ot.emd, exact optimal transport between
uniform distributions = the assignment problem) in the same alternating scheme
ResMoE uses, for tests/test_resmoe.c (tests/fixtures/resmoe/), plus POT's
free_support_barycenter objective for comparison.

For each case: E experts of n rows x D columns (random; and one layer of the
OLMoE fixture), barycenter initialised from expert 0, iterate until
||B_new - B||^2 <= 1e-7 or 100 iterations; the objective is
sum_k ||P_k X_k - B||_F^2. Writes <case>.f32 (raw experts, float32) and cases.json.

  python3 tools/resmoe_reference.py
"""
import json, os
import numpy as np
import ot

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "resmoe")


def barycenter(X, iters=100, tol=1e-7):
    B = X[0].copy()
    objs = []
    for _ in range(iters):
        aligned = []
        for Xk in X:
            M = -(B @ Xk.T)                      # maximise similarity
            P = ot.emd(np.full(len(B), 1.0 / len(B)), np.full(len(Xk), 1.0 / len(Xk)), M - M.min())
            perm = P.argmax(axis=1)
            assert sorted(perm) == list(range(len(B))), "not a permutation"
            aligned.append(Xk[perm])
        Bn = np.mean(aligned, axis=0)
        delta = ((Bn - B) ** 2).sum()
        B = Bn
        objs.append(float(sum(((A - B) ** 2).sum() for A in aligned)))
        if delta <= tol:
            break
    return B, objs


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = []
    shapes = [("rand_e4_n16_d12", 4, 16, 12), ("rand_e8_n24_d18", 8, 24, 18), ("rand_e3_n40_d30", 3, 40, 30)]
    data = {name: (rng.standard_normal((E, n, D)) * 0.02).astype(np.float32) for name, E, n, D in shapes}
    try:
        from safetensors.numpy import load_file
        st = load_file(os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "olmoe", "model.safetensors"))
        E = sum(1 for k in st if k.startswith("model.layers.1.mlp.experts.") and k.endswith("gate_proj.weight"))
        X = [np.concatenate([st[f"model.layers.1.mlp.experts.{e}.gate_proj.weight"], st[f"model.layers.1.mlp.experts.{e}.up_proj.weight"],
                             st[f"model.layers.1.mlp.experts.{e}.down_proj.weight"].T], axis=1) for e in range(E)]
        data["olmoe_fixture_layer1"] = np.stack(X).astype(np.float32)
    except Exception as e:  # the fixture is optional
        print("olmoe fixture layer skipped:", e)
    for name, X in data.items():
        X64 = X.astype(np.float64)
        B, objs = barycenter(list(X64))
        fs = ot.lp.free_support_barycenter([x for x in X64], [np.full(len(x), 1.0 / len(x)) for x in X64], X64[0].copy())
        # objective of POT's free-support barycenter (with its optimal assignments)
        fobj = 0.0
        for Xk in X64:
            M = ((fs[:, None, :] - Xk[None, :, :]) ** 2).sum(-1)
            P = ot.emd(np.full(len(fs), 1.0 / len(fs)), np.full(len(Xk), 1.0 / len(Xk)), M)
            fobj += float((P * M).sum() * len(fs))
        X.tofile(os.path.join(OUT, name + ".f32"))
        cases.append({"name": name, "E": int(X.shape[0]), "n": int(X.shape[1]), "D": int(X.shape[2]),
                      "pot_emd_objective": objs[-1], "pot_emd_iters": len(objs), "pot_free_support_objective": fobj})
        print(f"{name}: alternating ot.emd objective {objs[-1]:.6g} after {len(objs)} iterations; free_support_barycenter {fobj:.6g}")
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main()
