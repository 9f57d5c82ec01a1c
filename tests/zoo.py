"""Models the tests run over: the default model, torchvision architectures with random
weights, a small ViT, small timm transformers (ViT, DeiT, registers, Swin, ConvNeXt, Mixer), and hand-built models with functional ReLUs, a reused in-place ReLU
and two inputs. Each entry gives a model and a small example input (a tuple of tensors)."""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm


class FunctionalReluNet(nn.Module):
    """ReLUs written every functional way: F.relu, torch.relu, Tensor.relu_, inplace F.relu, F.relu6."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.conv3(x).relu_()
        x = F.relu(self.conv4(x) + x, inplace=True)
        x = F.relu6(x * 3.0)
        return self.fc(x.mean((2, 3)))


class ReusedReluNet(nn.Module):
    """One nn.ReLU(inplace=True) reused after every layer, as torchvision's ResNet does."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(x + y)
        return self.fc(x.mean((2, 3)))


class Siamese(nn.Module):
    """Two images through one shared branch; returns similarity logits of the pair."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, 2)

    def forward(self, a, b):
        return self.head(torch.cat([self.branch(a), self.branch(b)], 1))


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics so that a wrong mode shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def _tv(builder, size, **kw):
    torch.manual_seed(0)
    return _randomize_bn(builder(weights=None, **kw).eval()), (torch.randn(2, 3, size, size),)


@functools.lru_cache(maxsize=None)
def _default():
    import netloupe

    return netloupe.load_model("default").module


def build(name: str):
    """(model in eval mode, example inputs tuple) for a zoo entry."""
    torch.manual_seed(0)
    if name == "default":
        return copy.deepcopy(_default()), (torch.randn(2, 3, 96, 96),)
    if name == "resnet18":
        return _tv(tvm.resnet18, 64)
    if name == "densenet121":
        return _tv(tvm.densenet121, 64)
    if name == "googlenet":
        return _tv(tvm.googlenet, 64, aux_logits=False, init_weights=False)
    if name == "vgg11_bn":
        return _tv(tvm.vgg11_bn, 32)
    if name == "mobilenet_v3_small":
        return _tv(tvm.mobilenet_v3_small, 64)
    if name == "vit":
        from torchvision.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
        return vit.eval(), (torch.randn(2, 3, 32, 32),)
    if name in TRANSFORMERS:
        return _transformer(name)
    if name == "functional":
        return FunctionalReluNet().eval(), (torch.randn(2, 3, 16, 16),)
    if name == "reused_relu":
        return _randomize_bn(ReusedReluNet()).eval(), (torch.randn(2, 3, 16, 16),)
    if name == "siamese":
        return _randomize_bn(Siamese()).eval(), (torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16))
    raise KeyError(name)


def _transformer(name: str):
    """Small random-weight timm models of the layouts netloupe must read itself: a ViT (one class
    token), a distilled DeiT (two prefix tokens), a ViT with four register tokens on a non-square
    grid, a Swin (channels last), a ConvNeXt and an MLP-Mixer (tokens, no prefix)."""
    from timm.models.convnext import ConvNeXt
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.mlp_mixer import MlpMixer
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    vit = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    model = {
        "timm_vit": lambda: VisionTransformer(img_size=32, **vit),
        "deit": lambda: VisionTransformerDistilled(img_size=32, **vit),
        "vit_registers": lambda: VisionTransformer(img_size=(32, 48), reg_tokens=4, **vit),
        "swin": lambda: SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=16, depths=(1, 1),
                                        num_heads=(1, 2), num_classes=10),
        "convnext": lambda: ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=10),
        "mixer": lambda: MlpMixer(img_size=32, patch_size=8, num_blocks=2, embed_dim=32, num_classes=10),
    }[name]()
    torch.manual_seed(0)
    return model.eval(), (torch.randn(2, 3, 32, 48 if name == "vit_registers" else 32),)


TRANSFORMERS = ["timm_vit", "deit", "vit_registers", "swin", "convnext", "mixer"]

ZOO = ["default", "resnet18", "densenet121", "googlenet", "vgg11_bn", "mobilenet_v3_small", "vit",
       "functional", "reused_relu", "siamese"] + TRANSFORMERS

# a spatial layer of each zoo model, for probes and units
SPATIAL_LAYER = {
    "default": "blocks.5.0.conv_pw", "resnet18": "layer3.0.bn1", "densenet121": "features.denseblock2",
    "googlenet": "inception4a", "vgg11_bn": "features.4", "mobilenet_v3_small": "features.3",
    "vit": "encoder.layers.encoder_layer_0", "functional": "conv3", "reused_relu": "bn2", "siamese": "branch.3",
    "timm_vit": "blocks.0", "deit": "blocks.0", "vit_registers": "blocks.0", "swin": "layers.0", "convnext": "stages.1",
    "mixer": "blocks.0",
}
