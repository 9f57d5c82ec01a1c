"""netloupe attribution vs captum and pytorch-grad-cam, side by side in one process.

    python benchmarks/attribution.py [--device cpu|cuda] [--models resnet50,default] [--batches 1,8]
    python benchmarks/attribution.py --sheet      # the contact sheet's methods, one by one
    python benchmarks/attribution.py --models tiny --size 32 --repeats 30   # per-call overhead

For each method, "same" runs both libraries at identical settings (same steps, samples,
windows and chunking); "defaults" runs each library as a user would call it. Ratio = ours /
peer time (below 1.0: netloupe is faster).
"""

from __future__ import annotations

import argparse
import warnings

import torch

import netloupe as nl
from common import measure, table  # beside this file: a script's folder is on its import path

warnings.filterwarnings("ignore")


def build(name, device):
    if name == "tiny":  # a model that costs almost nothing: what is left is each library's per-call overhead
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(32, 10)).eval().to(device)
        return m, "3", m[3]
    if name == "resnet50":
        import torchvision

        m = torchvision.models.resnet50(weights=None).eval().to(device)
        return m, "layer4", m.layer4
    m = nl.load_model("default", device=device).module
    return m, "blocks.6", m.blocks[6]


def cases(model, layer_name, layer, x, target, device):
    """(method, setting, ours, peer name, peer) tuples."""
    import captum.attr as ca
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    n = x.shape[0]
    ig_bs = nl.runtime.batch_size(None, device, "integrated_gradients")
    peer_targets = [ClassifierOutputTarget(t) for t in target]

    def pgc(cls):
        def run():
            with cls(model=model, target_layers=[layer]) as cam:
                cam(input_tensor=x, targets=peer_targets)
        return run

    yield ("saliency", "same", lambda: nl.saliency(model, x, target), "captum",
           lambda: ca.Saliency(model).attribute(x, target=target))
    yield ("integrated_gradients n=50", "same",
           lambda: nl.integrated_gradients(model, x, target, steps=50, quadrature="gausslegendre", batch_size=ig_bs),
           "captum", lambda: ca.IntegratedGradients(model).attribute(x, target=target, n_steps=50, quadrature="gausslegendre",
                                                                      internal_batch_size=ig_bs))
    if torch.device(device).type == "cpu" and n * 50 * x[0].numel() > 200 * 3 * 224 * 224:
        # captum's default puts all 50 steps of every input in one batch: at batch 8 on the
        # default model that needed over 24 GB and the process was killed (seen here)
        peer_ig = None
    else:
        peer_ig = lambda: ca.IntegratedGradients(model).attribute(x, target=target)  # noqa: E731
    yield ("integrated_gradients n=50", "defaults", lambda: nl.integrated_gradients(model, x, target),
           "captum", peer_ig)
    yield ("smoothgrad n=10", "same", lambda: nl.smoothgrad(model, x, target, n=10, batch_size=ig_bs, seed=0),
           "captum", lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(
               x, nt_type="smoothgrad", nt_samples=10, nt_samples_batch_size=max(1, ig_bs // n), target=target,
               stdevs=0.15 * float(x.max() - x.min())))
    yield ("smoothgrad n=10", "defaults", lambda: nl.smoothgrad(model, x, target, n=10, seed=0),
           "captum", lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=10,
                                                                          target=target))
    yield ("guided_backprop", "same", lambda: nl.guided_backprop(model, x, target), "captum",
           lambda: ca.GuidedBackprop(model).attribute(x, target=target))
    occ_bs = nl.runtime.batch_size(None, device, "occlusion")
    yield ("occlusion 32/16", "same",
           lambda: nl.occlusion(model, x, target, window=32, stride=16, batch_size=occ_bs, progress=False),
           "captum", lambda: ca.Occlusion(model).attribute(x, target=target, sliding_window_shapes=(3, 32, 32),
                                                           strides=(3, 16, 16), perturbations_per_eval=max(1, occ_bs // n)))
    yield ("occlusion 32/16", "defaults", lambda: nl.occlusion(model, x, target, window=32, stride=16, progress=False),
           "captum", lambda: ca.Occlusion(model).attribute(x, target=target, sliding_window_shapes=(3, 32, 32),
                                                           strides=(3, 16, 16)))
    yield ("grad_cam", "same", lambda: nl.grad_cam(model, x, target, layer=layer_name), "captum",
           lambda: ca.LayerAttribution.interpolate(ca.LayerGradCam(model, layer).attribute(x, target=target),
                                                   x.shape[-2:], interpolate_mode="bilinear"))
    yield ("grad_cam", "same", lambda: nl.grad_cam(model, x, target, layer=layer_name), "pytorch-grad-cam",
           pgc(GradCAM))
    yield ("grad_cam_pp", "same", lambda: nl.grad_cam_pp(model, x, target, layer=layer_name), "pytorch-grad-cam",
           pgc(GradCAMPlusPlus))


def sheet(device, repeats, warmup):
    """Each method as `attribute --method all` runs it on the default model and one photo: where
    the contact sheet's time goes, and occlusion against the other methods together."""
    loaded = nl.load_model("default", device=device)
    x = loaded.inputs([nl.samples.image("chelsea")])
    target = int(loaded.module(x).argmax())
    times = {}
    for name, method in nl.attribution.METHODS.items():
        if method.applies(loaded.module):
            times[name] = measure(lambda: method(loaded, x, target=target), device, repeats, warmup)[0]
            print(f"{name}: {times[name] * 1000:.0f} ms", flush=True)
    others = sum(t for name, t in times.items() if name != "occlusion")
    print(f"\ndevice: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(table([(name, f"{t * 1000:.0f}") for name, t in times.items()], ("method", "ms")))
    print(f"occlusion / the other {len(times) - 1} methods together: {times['occlusion'] / others:.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="resnet50,default")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only", default=None, help="run only methods whose name contains this")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--sheet", action="store_true", help="time the contact sheet's methods instead")
    args = ap.parse_args(argv)
    if args.sheet:
        return sheet(args.device, args.repeats, args.warmup)
    rows = []
    for name in args.models.split(","):
        model, layer_name, layer = build(name, args.device)
        for n in map(int, args.batches.split(",")):
            torch.manual_seed(0)
            x = torch.randn(n, 3, args.size, args.size, device=args.device)
            target = [i % 10 for i in range(n)]
            for method, setting, ours, peer_name, peer in cases(model, layer_name, layer, x, target, args.device):
                if args.only and args.only not in method:
                    continue
                t_ours, m_ours = measure(ours, args.device, args.repeats, args.warmup)
                if peer is None:
                    rows.append((name, n, method, setting, peer_name, f"{t_ours * 1000:.0f}", "out of memory", "-",
                                 f"{m_ours:.0f}", "> 24000"))
                    print(table(rows[-1:], HEADERS).splitlines()[-1], flush=True)
                    continue
                t_peer, m_peer = measure(peer, args.device, args.repeats, args.warmup)
                rows.append((name, n, method, setting, peer_name, f"{t_ours * 1000:.0f}", f"{t_peer * 1000:.0f}",
                             f"{t_ours / t_peer:.2f}", f"{m_ours:.0f}", f"{m_peer:.0f}"))
                print(table(rows[-1:], HEADERS).splitlines()[-1], flush=True)
    print()
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(table(rows, HEADERS))


HEADERS = ("model", "batch", "method", "settings", "peer", "ours ms", "peer ms", "ratio", "ours MiB", "peer MiB")

if __name__ == "__main__":
    main()
