"""netloupe's propagation methods vs zennit and captum, side by side in one process.

    python benchmarks/propagation.py [--device cpu|cuda] [--models resnet50,vgg16] [--batches 1,8]

LRP runs against zennit with the same composite (and zennit's canonizers for the model), and
against one plain forward + backward of the model (the floor any modified backward pays);
DeepLIFT, DeepLiftShap, GradientSHAP and the conductance family run against captum at
identical settings. Ratio = ours / peer time (below 1.0: netloupe is faster).
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch

import netloupe as nl
from common import measure, table  # beside this file: a script's folder is on its import path

warnings.filterwarnings("ignore")
HEADERS = ("model", "batch", "method", "peer", "ours ms", "peer ms", "ratio", "ours MiB", "peer MiB")


def build(name, device):
    import torchvision

    model = getattr(torchvision.models, name)(weights=None).eval().to(device)
    layer = {"resnet50": "layer3", "vgg16": "features.23"}[name]
    return model, layer


def zennit_run(model, name, composite, x, target):
    from zennit.attribution import Gradient
    from zennit.composites import COMPOSITES
    from zennit.torchvision import ResNetCanonizer

    canonizers = [ResNetCanonizer()] if name.startswith("resnet") else []
    kw = {"low": -3.0, "high": 3.0} if composite == "epsilon_gamma_box" else {}
    start = torch.zeros(x.shape[0], 1000, device=x.device)
    start[range(x.shape[0]), target] = 1

    def run():
        with Gradient(model, COMPOSITES[composite](canonizers=canonizers, **kw)) as attributor:
            attributor(x, start)
    return run


def plain_backward(model, x, target):
    def run():
        xi = x.detach().requires_grad_(True)
        out = model(xi)
        torch.autograd.grad(out[range(x.shape[0]), target].sum(), xi)
    return run


def cases(model, name, layer, x, target):
    import captum.attr as ca

    peer_model = copy.deepcopy(model)  # zennit's canonizers and captum's hooks touch their own copy
    for composite in ("epsilon_plus_flat", "epsilon_gamma_box"):
        kw = {"low": -3.0, "high": 3.0} if composite == "epsilon_gamma_box" else {}
        def ours(c=composite, k=kw):
            return nl.lrp(model, x, target, composite=c, **k)
        yield f"lrp {composite}", "zennit", ours, zennit_run(peer_model, name, composite, x, target)
        yield f"lrp {composite}", "forward+backward", ours, plain_backward(model, x, target)
    dist = torch.randn(4, *x.shape[1:], device=x.device)
    yield "deeplift", "captum", lambda: nl.deeplift(model, x, target), \
        lambda: ca.DeepLift(peer_model).attribute(x, torch.zeros_like(x), target=target)
    yield "deeplift_shap B=4", "captum", lambda: nl.deeplift_shap(model, x, target, baselines=dist), \
        lambda: ca.DeepLiftShap(peer_model).attribute(x, dist, target=target)
    yield "gradient_shap n=5", "captum", lambda: nl.gradient_shap(model, x, target, baselines=dist, n=5, seed=0), \
        lambda: ca.GradientShap(peer_model).attribute(x, dist, n_samples=5, target=target)
    module = dict(peer_model.named_modules())[layer]
    bs = nl.runtime.batch_size(None, x.device, "integrated_gradients")
    yield "layer_conductance n=50", "captum", \
        lambda: nl.layer_conductance(model, x, target, layer=layer, steps=50, batch_size=bs), \
        lambda: ca.LayerConductance(peer_model, module).attribute(x, target=target, n_steps=50,
                                                                   internal_batch_size=bs)
    yield "internal_influence n=50", "captum", \
        lambda: nl.internal_influence(model, x, target, layer=layer, steps=50, batch_size=bs), \
        lambda: ca.InternalInfluence(peer_model, module).attribute(x, target=target, n_steps=50,
                                                                    internal_batch_size=bs)
    yield "neuron_conductance n=50", "captum", \
        lambda: nl.neuron_conductance(model, x, target, unit=f"{layer}:0@1,1", steps=50, batch_size=bs), \
        lambda: ca.NeuronConductance(peer_model, module).attribute(x, neuron_selector=(0, 1, 1), target=target,
                                                                    n_steps=50, internal_batch_size=bs)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="resnet50,vgg16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only", default=None, help="run only methods whose name contains this")
    args = ap.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        model, layer = build(name, args.device)
        for n in map(int, args.batches.split(",")):
            torch.manual_seed(0)
            x = torch.randn(n, 3, 224, 224, device=args.device)
            target = [i % 10 for i in range(n)]
            for method, peer_name, ours, peer in cases(model, name, layer, x, target):
                if args.only and args.only not in method:
                    continue
                t_ours, m_ours = measure(ours, args.device, args.repeats, args.warmup)
                try:
                    t_peer, m_peer = measure(peer, args.device, args.repeats, args.warmup)
                except Exception as e:  # captum's DeepLift refuses a reused ReLU (ResNet's)
                    rows.append((name, n, method, peer_name, f"{t_ours * 1000:.0f}", f"fails: {type(e).__name__}",
                                 "-", f"{m_ours:.0f}", "-"))
                else:
                    rows.append((name, n, method, peer_name, f"{t_ours * 1000:.0f}", f"{t_peer * 1000:.0f}",
                                 f"{t_ours / t_peer:.2f}", f"{m_ours:.0f}", f"{m_peer:.0f}"))
                print(table(rows[-1:], HEADERS).splitlines()[-1], flush=True)
    print()
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(table(rows, HEADERS))


if __name__ == "__main__":
    main()
