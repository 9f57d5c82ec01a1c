"""Style transfer quality: plain Gatys (``smoothing="none"``) against SWAG's softmax smoothing
(``smoothing="softmax"``, Wang et al. CVPR 2021) on the default model (EfficientNet-Lite0,
pretrained) and on a torchvision ResNet-18 with random weights (seed 0; no pretrained ResNet
weights exist offline), side by side in one process, every run from the same 224 px photos.

Each final image is measured against its content photo and its style photo:

- luma: mean Rec. 601 luma in [0, 1] (the content's and the style's are in the header);
- HF: high-frequency energy, the mean squared 3x3 Laplacian of the RGB channels, divided by the
  content photo's (1 = as sharp as the photo; pixel noise drives it up);
- hist: colour-histogram distance to the style photo, half the L1 distance of the two joint
  RGB histograms of 8 x 8 x 8 bins (0 = the same colours, 1 = no colour in common);
- VGG style / content: the plain Gatys losses (style_weight 1e6 x the summed Gram MSEs at
  conv1_1 .. conv5_1, content MSE at conv4_2) under one fixed scorer that neither run optimizes,
  torchvision's VGG-19 with random weights (seed 0; a random VGG carries texture statistics),
  the recipe of benchmarks/style.py.

Variants (``--variants``): none and softmax (SWAG as the paper has it, temperature 1), softmax-T4
(temperature 4), none+tv and softmax+tv (tv_weight 1e-2); none+tv300 and softmax+tv300
(tv_weight 3e-3, 300 steps whatever --steps says: the README's picture is none+tv300).

    PYTHONPATH=src python benchmarks/style_quality.py --steps 100 --sheet /tmp/style_sheets
    PYTHONPATH=src python benchmarks/style_quality.py --pairs chelsea:hubble,coffee:astronaut --models default \
        --variants none+tv300,softmax+tv300
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

import netloupe as nl
from common import table
from netloupe import images
from netloupe.optvis import style as style_module
from netloupe.optvis.photo import as_photos
from style import CONTENT, STYLE, Recipe, gram

# a ResNet's counterparts of the default layers: the stem and each stage's output for style, the
# stage at 1/8 of the input side (as VGG's conv4_2) for content
RESNET_LAYERS = dict(content_layers=["layer2"], style_layers=["relu", "layer1", "layer2", "layer3", "layer4"])
# style_transfer's keywords per variant (temperature: SWAG's softmax(F / T), the paper's T = 1)
VARIANTS = {"none": dict(smoothing="none"), "softmax": dict(smoothing="softmax"),
            "softmax-T4": dict(smoothing="softmax", temperature=4.0),
            "none+tv": dict(smoothing="none", tv_weight=1e-2), "softmax+tv": dict(smoothing="softmax", tv_weight=1e-2),
            "none+tv300": dict(smoothing="none", tv_weight=3e-3, steps=300),
            "softmax+tv300": dict(smoothing="softmax", tv_weight=3e-3, steps=300)}
LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)


def luma(x: torch.Tensor) -> float:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean().item()


def hf_energy(x: torch.Tensor) -> float:
    return F.conv2d(x, LAPLACE, groups=3).pow(2).mean().item()


def histogram(x: torch.Tensor, bins: int = 8) -> torch.Tensor:
    q = (x[0].clamp(0, 1) * bins).long().clamp(max=bins - 1).reshape(3, -1)
    h = torch.bincount(q[0] * bins * bins + q[1] * bins + q[2], minlength=bins ** 3).float()
    return h / h.sum()


def hist_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    return 0.5 * (histogram(x) - histogram(y)).abs().sum().item()


def models():
    torch.manual_seed(0)
    resnet = nl.LoadedModel(torchvision.models.resnet18(weights=None).eval(), nl.Preprocess(size=224, resize=224),
                            None, "resnet18 (random weights)")
    return {"default": (nl.load_model(), {}), "resnet18": (resnet, RESNET_LAYERS)}


def scorer_for(content01: torch.Tensor, style01: torch.Tensor) -> Recipe:
    torch.manual_seed(0)
    vgg = torchvision.models.vgg19(weights=None).eval()
    return Recipe(vgg, images.IMAGENET_MEAN, images.IMAGENET_STD, content01, style01, 1e6, 1.0)


def vgg_losses(scorer: Recipe, x: torch.Tensor):
    with torch.no_grad():
        f = scorer.features(x)
        style = scorer.sw * sum(F.mse_loss(gram(f[i]), scorer.grams[i]) for i in STYLE).item()
        return style, sum(F.mse_loss(f[i], scorer.targets[i]) for i in CONTENT).item()


def entropies(model, layers, x01: torch.Tensor):
    """Per style layer, the entropy of SWAG's softmax over the layer's C * P entries for ``x01``,
    divided by log(C * P) (1 = flat; peaky activations give less)."""
    acts, layouts = style_module._features(model, x01, layers)
    out = []
    for n in layers:
        p = style_module.softmax_smoothing(acts[n], layouts[n]).flatten() / acts[n][0].numel()
        out.append(-(p * p.clamp_min(1e-30).log()).sum().item() / math.log(p.numel()))
    return out


def measure(x: torch.Tensor, content01: torch.Tensor, style01: torch.Tensor, scorer: Recipe):
    vgg_style, vgg_content = vgg_losses(scorer, x)
    return [f"{luma(x):.3f}", f"{hf_energy(x) / hf_energy(content01):.2f}", f"{hist_distance(x, style01):.3f}",
            f"{vgg_style:.4g}", f"{vgg_content:.3g}"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--pairs", default="chelsea:hubble,coffee:astronaut", help="content:style,...")
    ap.add_argument("--models", default="default,resnet18")
    ap.add_argument("--variants", default="none,softmax,softmax-T4,none+tv,softmax+tv", help=f"of {sorted(VARIANTS)}")
    ap.add_argument("--sheet", default=None, help="folder for one picture per pair and model: content, style, "
                                                  "then each variant's result")
    args = ap.parse_args()
    nets = models()
    default = nets["default"][0]
    headers = ["model", "variant", "steps", "luma", "HF / content's", "hist to style", "VGG style", "VGG content",
               "own loss first -> last", "s"]
    for pair in args.pairs.split(","):
        content_name, style_name = pair.split(":")
        # the same 224 px tensors for every model (the default model's resize and crop)
        content01, style01 = (as_photos(nl.samples.path(n), default) for n in (content_name, style_name))
        scorer = scorer_for(content01, style01)
        print(f"\n{content_name} in the style of {style_name}, Adam: content luma "
              f"{luma(content01):.3f}, style luma {luma(style01):.3f}; style HF / content's "
              f"{hf_energy(style01) / hf_energy(content01):.2f}; content's hist to style "
              f"{hist_distance(content01, style01):.3f}; VGG style loss of the content photo "
              f"{vgg_losses(scorer, content01)[0]:.4g}\n", flush=True)
        rows = []
        for key in args.models.split(","):
            model, layers = nets[key]
            style_layers = layers.get("style_layers") or style_module.default_layers(model)[1]
            print(f"{key}: normalized entropy of the softmax at {', '.join(style_layers)}: content "
                  + ", ".join(f"{e:.3f}" for e in entropies(model, style_layers, content01)) + "; style "
                  + ", ".join(f"{e:.3f}" for e in entropies(model, style_layers, style01)), flush=True)
            pictures = [images.to_pil(content01[0]), images.to_pil(style01[0])]
            captions = [f"content: {content_name}", f"style: {style_name}"]
            for name in args.variants.split(","):
                t0 = time.perf_counter()
                kw = dict(steps=args.steps, progress=False, **layers)
                kw.update(VARIANTS[name])  # a variant may set its own steps
                style_module.SOFTMAX_TEMPERATURE = kw.pop("temperature", 1.0)
                try:
                    r = nl.style_transfer(model, content01, style01, **kw)
                finally:
                    style_module.SOFTMAX_TEMPERATURE = 1.0
                seconds = time.perf_counter() - t0
                rows.append([key, name, kw["steps"]] + measure(r.images.cpu(), content01, style01, scorer)
                            + [f"{r.history[0, 0]:.4g} -> {r.history[-1, 0]:.4g}", f"{seconds:.0f}"])
                print(table(rows[-1:], headers).splitlines()[-1], flush=True)
                pictures.append(r.to_pil())
                captions.append(f"{key}: {name}, {kw['steps']} steps")
            if args.sheet:
                Path(args.sheet).mkdir(parents=True, exist_ok=True)
                images.grid(pictures, captions, ncol=len(pictures), cell=224).save(
                    Path(args.sheet) / f"style_{content_name}_{style_name}_{key}.png")
        print("\n" + table(rows, headers), flush=True)


if __name__ == "__main__":
    main()
