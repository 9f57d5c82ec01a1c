"""Rendering 16 channels in one optimization batch vs 16 single renderings (same steps, same size),
and the same work with torch-lucent and torch-dreams when they can be imported.

Every final image is scored the same way: its channel's mean activation with no transforms
(image resized to 224, the default model's normalization, one forward pass).

    PYTHONPATH=src python benchmarks/optvis.py --steps 16
    # peers, installed apart so that torch is untouched:
    #   pip install --target /tmp/peers --no-deps torch-lucent==0.1.8 kornia==0.4.1 torch-dreams==4.0.0
    PYTHONPATH=src:/tmp/peers python benchmarks/optvis.py --steps 16
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn.functional as F

import netloupe as nl


def score(model, layer, images01, channels):
    """Mean activation of channel i on image i, no transforms."""
    x = F.interpolate(model.preprocess.normalize(images01.float().to(model.device)), size=model.preprocess.hw, mode="bilinear",
                      align_corners=False)
    with nl.probe(model.module, [layer], detach=True) as p, torch.no_grad():
        model.module(x)
    a = p.activations[layer]
    return torch.stack([a[i, c].mean() for i, c in enumerate(channels)])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_netloupe(model, layer, chans, steps, size, seed):
    rows = []
    for per in (len(chans), 8, 4):
        r, t = timed(lambda: nl.visualize_channels(model, layer, chans, size=size, steps=steps, seed=seed,
                                                   batch_size=per, progress=False))
        label = "one batch of 16" if per == len(chans) else f"{len(chans) // per} batches of {per} (batch_size={per})"
        rows.append((f"netloupe, {label}", r.images, t, len(chans) // per))
    singles, t_s = timed(lambda: torch.cat([nl.visualize(model, f"{layer}:{c}", size=size, steps=steps, seed=seed,
                                                         progress=False).images for c in chans]))
    rows.insert(1, ("netloupe, 16 single calls", singles, t_s, len(chans)))
    return rows


def run_lucent(model, layer, chans, steps, size):
    from lucent.optvis import objectives, param, render

    net = copy.deepcopy(model.module)  # lucent puts the model in eval mode and moves it
    name = layer.replace(".", "_")
    objective = sum(objectives.channel(name, c, batch=i) for i, c in enumerate(chans))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, t = timed(lambda: render.render_vis(net, objective, lambda: param.image(size, batch=len(chans)),
                                                 thresholds=(steps,), show_image=False, progress=False))
    return [("torch-lucent 0.1.8, one batch of 16", torch.from_numpy(out[-1]).permute(0, 3, 1, 2), t, 1)]


def run_dreams(model, layer, chans, steps):
    from torch_dreams import Dreamer

    net = copy.deepcopy(model.module)
    target = dict(net.named_modules())[layer]
    dreamer = Dreamer(net, quiet=True, device=str(model.device))

    def one(c):
        p = dreamer.render(layers=[target], width=224, height=224, iters=steps,
                           custom_func=lambda outs: -outs[0][:, c].mean())
        return p.to_chw_tensor().detach().cpu().unsqueeze(0)
    out, t = timed(lambda: torch.cat([one(c) for c in chans]))
    return [("torch-dreams 4.0, 16 single calls (224 px)", out, t, len(chans))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="blocks.4")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = nl.load_model("default", device=args.device)
    chans = list(range(16))
    nl.visualize(model, f"{args.layer}:0", size=args.size, steps=2, progress=False)  # warm-up, not timed
    rows = run_netloupe(model, args.layer, chans, args.steps, args.size, args.seed)
    notes = []
    for peer, run in (("torch-lucent", lambda: run_lucent(model, args.layer, chans, args.steps, args.size)),
                      ("torch-dreams", lambda: run_dreams(model, args.layer, chans, args.steps))):
        try:
            rows += run()
        except Exception as e:  # a peer that cannot run beside this torch is reported, not fatal
            notes.append(f"{peer}: could not run ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
    print(f"default model, {args.layer} channels 0..15, {args.steps} steps, {args.size} px param "
          f"(the model sees 224 px), torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}\n")
    print("| run | wall s | optimizer steps/s | channel-steps/s | mean final activation |")
    print("|---|---|---|---|---|")
    base = rows[0][2]
    for name, images, secs, calls in rows:
        acts = score(model, args.layer, images, chans)
        per_call_steps = args.steps * calls / secs
        print(f"| {name} | {secs:.1f} | {per_call_steps:.2f} | {args.steps * len(chans) / secs:.1f} | "
              f"{acts.mean():.3f} |")
    print(f"\nspeed-up of one batch over 16 single calls: {rows[1][2] / base:.2f}x")
    for name, _, secs, _ in rows[2:4]:
        print(f"speed-up of {name.split(', ')[1]} over 16 single calls: {rows[1][2] / secs:.2f}x")
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
