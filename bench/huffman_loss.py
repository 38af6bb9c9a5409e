#!/usr/bin/env python3
"""What Huffman coding itself costs over the order-0 entropy H_q of the codes
round(x / (2 eb)) of N(0, 0.02^2) bf16 weights: the average length of an
unlimited Huffman code, and of one limited to 12 bits (the codec's table
limit) built by flattening the counts until it fits - an upper bound on the
package-merge lengths the codec uses. Numbers in bits per value over H_q.

  python3 bench/huffman_loss.py [--ebs 1e-3,5e-3] [--n 8388608]
"""
import argparse
import heapq
import itertools

import numpy as np


def bf16(x):
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


def lengths(counts):
    """Huffman code length of every symbol with a nonzero count."""
    heap = [(c, i) for i, c in enumerate(counts) if c > 0]
    heapq.heapify(heap)
    ids = itertools.count(len(counts))
    children = {}
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        n = next(ids)
        children[n] = (a[1], b[1])
        heapq.heappush(heap, (a[0] + b[0], n))
    out, stack = {}, [(heap[0][1], 0)]
    while stack:
        node, depth = stack.pop()
        if node in children:
            stack.extend((c, depth + 1) for c in children[node])
        else:
            out[node] = max(depth, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ebs", default="1e-3,5e-3")
    ap.add_argument("--n", type=int, default=8 * 1024 * 1024)
    args = ap.parse_args()
    x = bf16((np.random.default_rng(1).standard_normal(args.n) * 0.02).astype(np.float32))
    for eb in map(float, args.ebs.split(",")):
        q = np.rint(x / (2 * eb)).astype(np.int64)
        cnt = np.bincount(np.where(q >= 0, 2 * q, -2 * q - 1))
        p = cnt[cnt > 0] / cnt.sum()
        h = float(-(p * np.log2(p)).sum())
        ln = lengths(cnt)
        avg = sum(cnt[s] * l for s, l in ln.items()) / cnt.sum()
        w, shift = cnt.copy(), 1
        while max(ln.values()) > 12:
            w = np.where(cnt > 0, (cnt >> shift) + 1, 0)
            ln = lengths(w)
            shift += 1
        avg12 = sum(cnt[s] * l for s, l in ln.items()) / cnt.sum()
        print(f"eb {eb:g}: H_q {h:.4f} bits; Huffman +{avg - h:.4f}; limited to 12 bits (flattened) +{avg12 - h:.4f}")


if __name__ == "__main__":
    main()
