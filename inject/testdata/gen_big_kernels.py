#!/usr/bin/python3
"""Make big_kernels.json: numpy's projection of the closed form for large kernels.

Run with Debian's python3 (numpy 1.24.2) from anywhere:

    /usr/bin/python3 inject/testdata/gen_big_kernels.py

The closed form is built here from ALGORITHM.md 2.4 and 2.9 alone, not from the Go code:
R[p][q] = ((z_p + z_q) C[p][q] - z_p z_q) / 2 over row-major taps, z the centred Gaussian
exp(-|p - c|^2 / (2 sigma)), C the Gaussian of the wrapped tap difference. numpy's eigh
(LAPACK) projects it: R+ = Q diag(max(lambda, 0)) Q^T. A whole R+ is megabytes, so the file
keeps a few statistics and a fixed sample of entries; TestBigKernelGoldens compares them
with a Cache's projection at 1e-10.
"""

import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [([31, 31], 0.15), ([31, 31], math.pi / 2), ([31, 31], 4.0), ([32, 32], 2.0),
         ([51, 51], math.pi / 2), ([9, 9, 9], 1.3)]
EXTREMES = 8   # eigenvalues kept at each end
NEAR, FAR = 48, 32  # entries of R+ kept near the centre, where it is large, and anywhere


def closed_form(dims, sigma):
    coords = np.array(np.unravel_index(np.arange(math.prod(dims)), dims)).T  # (n, rank)
    centre = (np.array(dims) - 1) / 2
    z = np.exp(-((coords - centre) ** 2).sum(axis=1) / (2 * sigma))
    dist2 = np.zeros((len(z), len(z)))
    for a, k in enumerate(dims):
        t = (coords[None, :, a] - coords[:, None, a]) % k
        w = (t + k // 2) % k - k // 2
        dist2 += w.astype(float) ** 2
    c = np.exp(-dist2 / (2 * sigma))
    return 0.5 * ((z[:, None] + z[None, :]) * c - np.outer(z, z))


def pairs(dims):
    """The corner, the centre and its neighbour, then pairs from a fixed LCG: NEAR with
    each coordinate within 4 of the centre, FAR anywhere."""
    n = math.prod(dims)
    out = [(0, 0), (0, n - 1), (n // 2, n // 2), (n // 2, n // 2 + 1)]
    state = 12345

    def draw(m):
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (state >> 33) % m

    def near():
        return int(np.ravel_multi_index([k // 2 - 4 + draw(9) for k in dims], dims))

    out += [(near(), near()) for _ in range(NEAR)]
    out += [(draw(n), draw(n)) for _ in range(FAR)]
    return out


def main():
    cases = []
    for dims, sigma in CASES:
        r = closed_form(dims, sigma)
        lam, q = np.linalg.eigh(r)
        psd = (q * np.maximum(lam, 0)) @ q.T
        cases.append({
            "dims": dims,
            "sigma": sigma,
            "lowest": lam[:EXTREMES].tolist(),
            "highest": lam[-EXTREMES:].tolist(),
            "trace_psd": float(np.trace(psd)),
            "frobenius_psd": float(np.linalg.norm(psd)),
            "entries": [[p, q2, float(psd[p, q2])] for p, q2 in pairs(dims)],
        })
    doc = {
        "_meta": {
            "made_by": "inject/testdata/gen_big_kernels.py",
            "numpy": np.__version__,
            "what": "projection of the closed form by numpy's eigh: the %d lowest and highest "
                    "eigenvalues, trace and Frobenius norm of R+, and entries [p, q, R+[p][q]] "
                    "over row-major taps" % EXTREMES,
        },
        "cases": cases,
    }
    # One line per case keeps the file small and its diffs readable.
    with open(os.path.join(HERE, "big_kernels.json"), "w") as f:
        f.write('{"_meta": %s,\n "cases": [\n  ' % json.dumps(doc["_meta"]))
        f.write(",\n  ".join(json.dumps(c) for c in cases))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
