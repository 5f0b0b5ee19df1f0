#!/usr/bin/env python3
"""The TenSEAL side of `cargo bench --bench match_vs_naive`: encrypted probe times encrypted
gallery, the similarity of one int4 probe with every int4 template, in CKKS with the best
batching TenSEAL offers for two encrypted operands.

Batching: SIMD across templates. Ciphertext i of the gallery holds coordinate i of 4,096
templates (one per slot, N = 8192); the probe is 128 ciphertexts, ciphertext i holding the
probe's coordinate i in every slot. The scores of 4,096 templates are then
sum_i gallery_i * probe_i: 128 ciphertext-ciphertext products and no rotation. Relinearisation
and rescaling are left out of the loop (TenSEAL's auto_relin / auto_rescale off): the sum of
degree-2 products decrypts as it is, which is the cheapest evaluation TenSEAL allows (with both
on, the same run takes about 6x longer). Parameters: N = 8192, coefficient modulus 60+40+40+60
bits (200 <= 218, SEAL's bound for 128-bit security at N = 8192), scale 2^40.

Prints one JSON line: per_template_us (best of --runs evaluations, single thread), exact (every
decrypted score rounds to the plaintext inner product), max_abs_error, probe_encrypt_ms,
decrypt_ms, response_bytes per template.

Usage: tenseal_match.py [--batches B] [--dim D] [--runs R] [--seed S]
"""

import argparse
import json
import sys
import time

try:
    import numpy as np
    import tenseal as ts
except ImportError as error:  # pragma: no cover - reported to the caller
    print(json.dumps({"error": f"{error} (run scripts/peer-venv)"}))
    sys.exit(2)

POLY = 8192
SLOTS = POLY // 2


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=1, help="gallery size in units of 4,096 templates")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.batches < 1 or args.dim < 1 or args.runs < 1:
        print(json.dumps({"error": "--batches, --dim and --runs must be positive"}))
        return 2

    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=POLY, coeff_mod_bit_sizes=[60, 40, 40, 60], n_threads=1)
    ctx.global_scale = 2**40
    ctx.auto_relin = False
    ctx.auto_rescale = False
    ctx.auto_mod_switch = False

    rng = np.random.default_rng(args.seed)
    n = args.batches * SLOTS
    templates = rng.integers(-8, 8, size=(n, args.dim))
    probe = rng.integers(-8, 8, size=args.dim)
    print(f"tenseal: encrypting {n} templates ({args.batches} x {args.dim} ciphertexts)...", file=sys.stderr)
    gallery = [
        [ts.ckks_vector(ctx, templates[b * SLOTS:(b + 1) * SLOTS, i].astype(float).tolist()) for i in range(args.dim)]
        for b in range(args.batches)
    ]
    started = time.perf_counter()
    encrypted_probe = [ts.ckks_vector(ctx, [float(probe[i])] * SLOTS) for i in range(args.dim)]
    probe_encrypt_ms = (time.perf_counter() - started) * 1e3

    best = float("inf")
    results = []
    for _ in range(args.runs):
        started = time.perf_counter()
        results = []
        for batch in gallery:
            acc = batch[0] * encrypted_probe[0]
            for i in range(1, args.dim):
                acc += batch[i] * encrypted_probe[i]
            results.append(acc)
        best = min(best, time.perf_counter() - started)

    started = time.perf_counter()
    decrypted = np.concatenate([np.array(r.decrypt()) for r in results])
    decrypt_ms = (time.perf_counter() - started) * 1e3
    want = templates @ probe
    error = float(np.abs(decrypted - want).max())
    response_bytes = sum(len(r.serialize()) for r in results) / n
    print(json.dumps({
        "side": "TenSEAL CKKS, SIMD across templates",
        "tenseal": getattr(ts, "__version__", "unknown"),
        "threads": 1,
        "gallery": n,
        "dim": args.dim,
        "poly_modulus_degree": POLY,
        "per_template_us": best * 1e6 / n,
        "exact": bool((np.rint(decrypted).astype(int) == want).all()),
        "max_abs_error": error,
        "probe_encrypt_ms": probe_encrypt_ms,
        "decrypt_ms": decrypt_ms,
        "response_bytes_per_template": response_bytes,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
