"""Check the CUDA paths: every public method runs on a GPU model, agrees with the CPU result,
and leaves the model as found.

    python benchmarks/gpu_check.py        (on a machine with a CUDA GPU)
"""

from __future__ import annotations

import contextlib
import copy
import sys

import torch

import netloupe as nl


def model_state(module):
    """What a public function must leave as found: parameters and buffers bit for bit, each
    module's mode and hooks, each parameter's requires_grad. (tests/model_state.py checks more on
    CPU, for every function; this script stands alone and imports no tests.)"""
    return {
        "state_dict": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "training": [m.training for m in module.modules()],
        "requires_grad": [p.requires_grad for p in module.parameters()],
        "hooks": [len(h) for m in module.modules()
                  for h in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks)],
    }


@contextlib.contextmanager
def leaves_unchanged(module):
    """Assert that the block leaves ``module`` as found."""
    before = model_state(module)
    yield
    after = model_state(module)
    for key, was in before.items():
        now = after[key]
        if key == "state_dict":
            same = was.keys() == now.keys() and all(torch.equal(v, now[k]) for k, v in was.items())
        else:
            same = was == now
        assert same, f"the call changed the model's {key}"


def cosine(a, b):
    """Cosine similarity of two maps: robust to the odd ReLU that flips between CPU and GPU rounding."""
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    return float(a @ b / (a.norm() * b.norm()).clamp(min=1e-30))


def main():
    assert torch.cuda.is_available(), "no CUDA GPU here"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    failures = 0
    cpu = nl.load_model("default")
    gpu = copy.deepcopy(cpu)
    gpu.module.cuda()
    photos = [nl.samples.path(n) for n in ("chelsea", "coffee")]
    checks = {
        "saliency": {}, "input_x_gradient": {}, "guided_backprop": {}, "deconvnet": {},
        "integrated_gradients": {"steps": 20, "quadrature": "gausslegendre"}, "smoothgrad": {"n": 4, "seed": 0},
        "grad_cam": {}, "grad_cam_pp": {}, "guided_grad_cam": {}, "occlusion": {"window": 32, "stride": 32},
    }
    for method, kw in checks.items():
        with leaves_unchanged(gpu.module):
            g = nl.attribute(gpu, photos, method, target=[281, 967], **kw)
        c = nl.attribute(cpu, photos, method, target=[281, 967], **kw)
        r = cosine(g.values, c.values) if method != "smoothgrad" else float("nan")  # noise differs per device
        ok = g.values.is_cuda and (method == "smoothgrad" or r > 0.999)
        failures += not ok
        print(f"{'ok ' if ok else 'BAD'} {method:22s} on {g.values.device}, cosine similarity to CPU {r:.6f}")
    ig = nl.integrated_gradients(gpu, photos[1], steps=50)
    print(f"integrated_gradients adaptive on cuda: completeness gap {float(ig.delta[0] / ig.extra['gap'][0]):+.4f}")
    with leaves_unchanged(gpu.module), nl.probe(gpu, stochastic=True), torch.no_grad():
        x = gpu.inputs(photos)
        a, b = gpu.module(x), gpu.module(x)
    print(f"{'ok ' if not torch.equal(a, b) else 'BAD'} probe(stochastic=True) dropout active on cuda")
    failures += torch.equal(a, b)
    with leaves_unchanged(gpu.module):
        r = nl.visualize(gpu, ["blocks.4:0", "blocks.4:1"], size=64, steps=8, seed=0, progress=False)
        ok = r.images.shape == (2, 3, 64, 64) and bool(torch.isfinite(r.images).all())
        print(f"{'ok ' if ok else 'BAD'} visualize on cuda: images {tuple(r.images.shape)} on {r.images.device}")
        failures += not ok
        d = nl.augment(gpu, photos[0], "classifier", n=2, steps=20, seed=0, progress=False)
        ok = d.images.is_cuda and bool(torch.isfinite(d.images).all())
        print(f"{'ok ' if ok else 'BAD'} augment on cuda: loss {d.loss.tolist()}")
        failures += not ok
        s = nl.scan(gpu, nl.samples.dataset(8, size=128), ["blocks.2", "conv_head"], progress=False)
        s_cpu = nl.scan(cpu, nl.samples.dataset(8, size=128), ["blocks.2", "conv_head"], progress=False)
        ok = all(torch.equal(s[k].top_images.cpu(), s_cpu[k].top_images.cpu()) and
                 torch.allclose(s[k].mean.cpu(), s_cpu[k].mean.cpu(), rtol=1e-3, atol=1e-4) for k in ("blocks.2", "conv_head"))
        print(f"{'ok ' if ok else 'BAD'} scan on cuda: top-k images and channel means agree with the CPU scan")
        failures += not ok
    print("FAILURES:", failures)
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
