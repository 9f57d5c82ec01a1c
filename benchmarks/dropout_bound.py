"""How few model passes could ANY optimizer need for dropout augmentation on the default model?

benchmarks/dropout.py measures netloupe against dropviz's loop. This script asks what the
best possible method could reach on the same problem (chelsea, layer ``classifier``, the same
dropout targets and tolerances), so that the ratio can be judged against a ceiling:

1. The exact Jacobian J of L's output with respect to the input at x (one vector-Jacobian
   product per output element, batched).
2. The ideal on the LINEARIZED problem (L(x~) = L(x) + J (x~ - x)): block Krylov / CGLS, the
   optimal method among those that see the model only through products with J and J^T (each
   costs at least one forward + backward of one image, i.e. one pass). Each sample alone, and
   the n samples of one input sharing one Krylov space (they share J).
3. How linear the real problem is: the relative error of the first-order model
   ||L(x + d) - L(x) - J d|| / ||J d|| along the first gradient direction, at growing steps.
4. dropviz's baseline (benchmarks/dropout.py) on the same targets, for the ratio.

    PYTHONPATH=src OMP_NUM_THREADS=2 python benchmarks/dropout_bound.py [--n 4 8] [--fractions 0.05 0.02]
"""

from __future__ import annotations

import argparse

import torch

import netloupe as nl
from dropout import baseline, starting_point  # benchmarks/dropout.py: a script's folder is on its import path


def layer_output(module, layer, x):
    with nl.probe(module, [layer], detach=True) as p, torch.no_grad():
        module(x)
    return p.activations[layer].flatten(1)


def jacobian(module, layer, x, chunk=50):
    """[D, N] exact Jacobian of L's flattened output at the single input x."""
    rows = []
    with nl.probe(module, [layer]) as p:
        dim = None
        start = 0
        while dim is None or start < dim:
            xb = x.repeat(chunk, 1, 1, 1).requires_grad_(True)
            module(xb)
            out = p.activations[layer].flatten(1)
            dim = out.shape[1]
            k = min(chunk, dim - start)
            cot = torch.zeros_like(out)
            cot[torch.arange(k), torch.arange(start, start + k)] = 1
            (g,) = torch.autograd.grad(out, xb, cot)
            rows.append(g[:k].flatten(1).double())
            start += k
    return torch.cat(rows)


def krylov_iterations(J, R, fractions, max_iter=200):
    """Block CGLS on J d = r for the columns of R (exact arithmetic via an orthonormal basis):
    for each fraction, the first iteration at which every column's residual is below it."""
    basis, found = [], {}

    def orth(V):
        for _ in range(2):  # twice is enough for orthogonality in float64
            for B in basis:
                V = V - B @ (B.T @ V)
        return torch.linalg.qr(V)[0]

    basis.append(orth(J.T @ R))
    for k in range(1, max_iter + 1):
        JB = J @ torch.cat(basis, 1)
        coef = torch.linalg.lstsq(JB, R).solution
        rel = ((R - JB @ coef).pow(2).sum(0) / R.pow(2).sum(0)).max().item()
        for f in fractions:
            if rel <= f and f not in found:
                found[f] = k
        if len(found) == len(fractions):
            break
        basis.append(orth(J.T @ (J @ basis[-1])))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.02])
    ap.add_argument("--no-baseline", action="store_true", help="skip dropviz's loop (the slow part)")
    args = ap.parse_args()
    loaded = nl.load_model("default")
    module, layer = loaded.module, "classifier"
    x = loaded.inputs(nl.samples.path("chelsea"))
    clean = layer_output(module, layer, x)[0].double()
    J = jacobian(module, layer, x)
    sv = torch.linalg.eigvalsh(J @ J.T).flip(0).clamp_min(0).sqrt()
    print(f"default model, layer {layer}, chelsea 224 px: J is {tuple(J.shape)}; singular values: largest "
          f"{sv[0]:.3g}, 10th {sv[9]:.3g}, 100th {sv[99]:.3g}, 300th {sv[299]:.3g}; "
          f"numerical rank {int((sv > sv[0] * 1e-6).sum())}")

    g = (J.T @ (torch.randn(len(J), dtype=J.dtype, generator=torch.Generator().manual_seed(0)))).float()
    g = g.view_as(x) / g.abs().max()
    print("\nFirst-order model error along a gradient direction d (max |d| per pixel, model input units):")
    print("| max abs d | relative error of L(x) + J d |")
    print("|---|---|")
    for step in (1e-4, 1e-3, 1e-2, 1e-1):
        actual = layer_output(module, layer, x + step * g)[0].double() - clean
        linear = J @ (step * g).flatten().double()
        print(f"| {step:g} | {float((actual - linear).norm() / linear.norm()):.3f} |")

    print("\n| n | tolerance (of starting MSE) | ideal passes, samples alone | ideal passes, shared Krylov space |"
          " dropviz passes | dropviz / ideal |")
    print("|---|---|---|---|---|---|")
    for n in args.n:
        r0 = starting_point(loaded, layer, x, n)
        targets = r0.targets[0].flatten(1).double()
        R = (targets - clean).T  # [D, n]: the change of L's output each sample asks for
        alone = [krylov_iterations(J, R[:, i:i + 1], args.fractions) for i in range(n)]
        shared = krylov_iterations(J, R, args.fractions)
        start = float(r0.loss.mean())
        for f in args.fractions:
            ideal_alone = sum(a[f] for a in alone)
            ideal_shared = shared[f] * n
            if args.no_baseline:
                base, ratio = "-", "-"
            else:
                _, passes, _, _ = baseline(module, layer, x, r0.targets[0], f * start, 3000)
                base, ratio = str(passes), f"{passes / min(ideal_alone, ideal_shared):.1f}x"
            print(f"| {n} | {f:g} | {ideal_alone} | {ideal_shared} | {base} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
