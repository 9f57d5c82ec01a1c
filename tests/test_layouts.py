"""Layer layouts (tokens with prefix tokens, channels last, vectors) read by every capability:
units, Grad-CAM against pytorch-grad-cam, attention rollout against a hand computation,
scans against brute force, renders at a ViT's fixed size, and clear errors."""

import copy
import warnings

import pytest
import torch

import netloupe as nl
import zoo
from netloupe.layouts import Layout, infer, parse

warnings.filterwarnings("ignore", module="pytorch_grad_cam")


def rel(ours, ref):
    ours, ref = torch.as_tensor(ours).detach().double(), torch.as_tensor(ref).detach().double()
    return float((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


def outputs(model, x, layer):
    """A layer's output, hooked by hand (independently of netloupe), with the model's output."""
    got = {}
    module = dict(model.named_modules())[layer]
    h = module.register_forward_hook(lambda m, i, o: got.__setitem__("a", o))
    try:
        out = model(x)
    finally:
        h.remove()
    return got["a"], out


@pytest.mark.parametrize("name,layer,layout", [
    ("timm_vit", "blocks.0", "tokens(1, 4x4)"),
    ("deit", "blocks.1", "tokens(2, 4x4)"),            # class + distillation token
    ("vit_registers", "blocks.0", "tokens(5, 4x6)"),   # class + 4 registers, a non-square grid
    ("vit_registers", "patch_embed", "tokens(0, 4x6)"),  # before the prefix tokens join
    ("swin", "layers.1", "nhwc"),
    ("swin", "patch_embed.proj", "nchw"),              # the conv inside the NHWC embedding
    ("convnext", "stages.1", "nchw"),
    ("mixer", "blocks.0", "tokens(0, 4x4)"),
    ("vit", "encoder.layers.encoder_layer_0", "tokens(1, 4x4)"),  # torchvision's ViT
    ("timm_vit", "head", "vector"),
])
def test_layouts_are_inferred_from_the_model(name, layer, layout):
    model, (x,) = zoo.build(name)
    with nl.probe(model, [layer]) as p, torch.no_grad():
        model(x)
        assert str(p.layout(layer)) == layout


def test_the_layout_grammar():
    assert parse("tokens(2, 3x5)") == Layout("tokens", 2, (3, 5))
    assert parse("tokens(1)", tokens=17) == Layout("tokens", 1, (4, 4))
    assert parse("tokens", tokens=50, aspect=1.0) == Layout("tokens", 1, (7, 7))
    assert parse(" NHWC ".lower()) == Layout("nhwc") and str(parse("vector")) == "vector"
    for bad in ("nwhc", "tokens(x)", "nchw(1)", "tokens(1, 3)", 5):
        with pytest.raises(nl.NetloupeError, match="tokens\\(K, HxW\\)"):
            parse(bad)


def test_units_on_token_layers():
    model, (x,) = zoo.build("timm_vit")
    a, _ = outputs(model, x, "blocks.0")
    with nl.probe(model, ["blocks.0"]) as p, torch.no_grad():
        model(x)
        assert torch.allclose(p.unit_value("blocks.0:5"), a[:, 1:, 5].mean(1))  # grid tokens, class token left out
        assert torch.allclose(p.unit_value("blocks.0:5@1,2"), a[:, 1 + 1 * 4 + 2, 5])
        assert torch.allclose(p.unit_value("blocks.0:5@cls"), a[:, 0, 5])
        assert torch.allclose(p.unit_value("blocks.0:5@t3"), a[:, 3, 5])
        with pytest.raises(nl.UnitError, match="channels 0..31"):
            p.unit_value("blocks.0:40")
        with pytest.raises(nl.UnitError, match="valid y is 0..3"):
            p.unit_value("blocks.0:5@4,0")
        with pytest.raises(nl.UnitError, match="tokens 0..16"):
            p.unit_value("blocks.0:5@t17")
    assert str(nl.Unit.parse("blocks.0:5@cls")) == "blocks.0:5@cls" and nl.Unit.parse("b:1@t3").token == 3
    # a unit target on a token layer backpropagates from that channel's grid mean
    xi = x.clone().requires_grad_(True)
    a, _ = outputs(model, xi, "blocks.0")
    want = torch.autograd.grad(a[:, 1:, 5].mean(1).sum(), xi)[0]
    assert rel(nl.saliency(model, x, "blocks.0:5", abs=False).values, want) <= 1e-5


def test_grad_cam_on_a_vit_equals_pytorch_grad_cam_with_its_reshape_transform():
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, (x,) = zoo.build("timm_vit")

    def reshape_transform(t, height=4, width=4):  # pytorch-grad-cam's tutorial, for one class token
        return t[:, 1:, :].reshape(t.size(0), height, width, t.size(2)).transpose(2, 3).transpose(1, 2)

    with pytorch_grad_cam.GradCAM(model=model, target_layers=[model.blocks[-1].norm1],
                                  reshape_transform=reshape_transform) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in (3, 7)])
    ours = nl.grad_cam(model, x, [3, 7], interpolate=False)
    assert ours.extra["layer"] == "blocks.1.norm1"  # the default layer: pytorch-grad-cam's advice for ViTs
    m = scale_cam_image(scale_cam_image(ours.values[:, 0].numpy(), tuple(x.shape[-2:])[::-1]))
    assert rel(torch.from_numpy(m), torch.from_numpy(ref)) <= 1e-5


def test_grad_cam_on_an_nhwc_layer_equals_the_nchw_formula_on_the_permuted_values():
    model, (x,) = zoo.build("swin")
    a, out = outputs(model, x, "layers.1")
    g = torch.autograd.grad(out[[0, 1], [3, 7]].sum(), a)[0]
    a, g = a.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)  # NHWC -> NCHW by hand
    want = (g.mean((2, 3))[:, :, None, None] * a).sum(1, keepdim=True).clamp(min=0)
    ours = nl.grad_cam(model, x, [3, 7], layer="layers.1", interpolate=False)
    assert ours.values.shape == (2, 1, 8, 8) and rel(ours.values, want) <= 1e-5
    pp = nl.grad_cam_pp(model, x, [3, 7], layer="layers.1")
    assert pp.values.shape == (2, 1, 32, 32)


@pytest.mark.parametrize("name,grid", [("deit", (4, 4)), ("vit_registers", (4, 6)), ("mixer", (4, 4))])
def test_grad_cam_reads_prefix_tokens_and_grids_itself(name, grid):
    model, (x,) = zoo.build(name)
    a, out = outputs(model, x, "blocks.1.norm1" if name != "mixer" else "norm")
    r = nl.grad_cam(model, x, [3, 7], interpolate=False, relu=False)
    prefix = {"deit": 2, "vit_registers": 5, "mixer": 0}[name]
    g = torch.autograd.grad(out[[0, 1], [3, 7]].sum(), a)[0]
    nchw = lambda t: t[:, prefix:].reshape(2, *grid, t.shape[2]).permute(0, 3, 1, 2)  # noqa: E731
    want = (nchw(g).mean((2, 3))[:, :, None, None] * nchw(a)).sum(1, keepdim=True)
    assert r.values.shape == (2, 1, *grid) and rel(r.values, want) <= 1e-5


def _rollout_by_hand(model, x, weights=None):
    """Attention rollout from each block's attention computed from its qkv weights by hand."""
    maps = []
    hooks = [b.attn.register_forward_pre_hook(lambda m, args: maps.append(args[0])) for b in model.blocks]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    rollout = torch.eye(maps[0].shape[1]).expand(len(x), -1, -1)
    for block, inp in zip(model.blocks, maps):
        at = block.attn
        n, t, c = inp.shape
        qkv = at.qkv(inp).reshape(n, t, 3, at.num_heads, c // at.num_heads).permute(2, 0, 3, 1, 4)
        a = ((qkv[0] @ qkv[1].transpose(-2, -1)) * at.scale).softmax(-1).mean(1)
        step = (a + torch.eye(t)) / 2
        rollout = (step / step.sum(-1, keepdim=True)) @ rollout
    return rollout[:, 0, 1:].reshape(len(x), 1, 4, 4), out


def test_attention_rollout_equals_a_hand_computation_on_a_two_block_vit():
    model, (x,) = zoo.build("timm_vit")
    assert len(model.blocks) == 2 and model.blocks[0].attn.fused_attn  # the probe switches it off and back
    with torch.no_grad():
        want, _ = _rollout_by_hand(model, x)
    ours = nl.attention_rollout(model, x, interpolate=False)
    assert model.blocks[0].attn.fused_attn
    assert ours.values.shape == (2, 1, 4, 4) and rel(ours.values, want) <= 1e-5
    assert nl.attention_rollout(model, x).values.shape == (2, 1, 32, 32)
    grad = nl.gradient_rollout(model, x, [3, 7], interpolate=False)
    other = nl.gradient_rollout(model, x, [4, 8], interpolate=False)
    assert grad.values.shape == (2, 1, 4, 4) and not torch.allclose(grad.values, other.values)  # class-specific
    with pytest.raises(nl.NetloupeError, match="needs a vision transformer"):
        nl.attention_rollout(zoo.build("resnet18")[0], torch.randn(1, 3, 32, 32))


def test_a_class_out_of_range_is_refused_by_rollout_too():
    """Attention rollout ignores the class, but a class the model does not have is a mistake all the same."""
    model, (x,) = zoo.build("timm_vit")
    for method in (nl.attention_rollout, nl.gradient_rollout):
        with pytest.raises(nl.InputError, match="target class 1000000 out of range; the model has classes 0..9"):
            method(model, x, target=10 ** 6)


def test_compare_and_layers_take_a_vits_own_input_size():
    """A ViT built for 32 px takes only 32 px: compare and the layer table feed it that, as scan does."""
    model, (x,) = zoo.build("timm_vit")
    assert nl.load_model(model).input_size == (32, 32) and nl.load_model(model).preprocess.hw == (32, 32)
    rows = {r.name: r for r in nl.layers(model)}
    assert rows["blocks.1"].shape == (1, 17, 32)
    data = [torch.randn(3, 32, 32) for _ in range(4)]
    r = nl.compare([model, copy.deepcopy(model)], ["blocks.1"], data, channels=2, steps=1, size=16, progress=False)
    assert len(r.rows()) == 2
    assert nl.scan(model, data, ["blocks.1"], progress=False)["blocks.1"].channels == 32


def test_rollout_reads_distillation_and_register_tokens():
    for name, grid in (("deit", (4, 4)), ("vit_registers", (4, 6))):
        model, (x,) = zoo.build(name)
        r = nl.attention_rollout(model, x, interpolate=False, discard_ratio=0.5)
        assert r.values.shape == (2, 1, *grid) and torch.isfinite(r.values).all() and (r.values >= 0).all()


def test_a_scan_of_a_vit_block_counts_channels_and_its_top_k_is_brute_force():
    model, _ = zoo.build("timm_vit")
    torch.manual_seed(3)
    data = [torch.randn(3, 32, 32) for _ in range(7)]
    result = nl.scan(model, data, ["blocks.0"], top_k=3, progress=False)
    stats = result["blocks.0"]
    assert stats.shape == (32, 4, 4) and stats.channels == 32 and stats.layout == "tokens(1, 4x4)"
    with torch.no_grad():
        a, _ = outputs(model, torch.stack(data), "blocks.0")
    grid = a[:, 1:]  # [images, 16 grid tokens, 32 channels]; the class token is not a position
    peak, where = grid.max(1)
    values, images = peak.T.topk(3, dim=1)
    assert torch.equal(stats.top_images, images) and torch.allclose(stats.top_values, values.double())
    cells = where.T.gather(1, images)
    assert torch.equal(stats.top_positions, torch.stack([cells // 4, cells % 4], -1))
    patches = nl.top_patches(result, "blocks.0", 5)
    assert patches.field.clipped and patches.fired.shape == (3, 32, 32)  # attention sees the whole image


def test_renders_on_token_and_nhwc_layers_at_a_vits_fixed_size():
    model, _ = zoo.build("timm_vit")
    seen = []
    h = model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        r = nl.visualize(model, ["blocks.1:3", "blocks.1:4@1,1"], size=48, steps=2, seed=0, progress=False)
    finally:
        h.remove()
    assert set(seen) == {(32, 32)} and r.images.shape == (2, 3, 48, 48)  # rendered at 48, fed at the model's 32
    swin, _ = zoo.build("swin")
    s = nl.visualize(swin, ["layers.1:3", "layers.1:3@2,2"], size=32, steps=2, seed=0, progress=False)
    assert torch.isfinite(s.history).all()
    d = nl.visualize_diverse(model, "blocks.1:3", n=2, size=32, steps=2, seed=0, progress=False)
    assert d.images.shape == (2, 3, 32, 32)


def test_layout_overrides_and_their_errors():
    model, (x,) = zoo.build("timm_vit")
    loaded = nl.load_model(model, layouts={"blocks.0": "tokens(1, 2x8)"})
    assert loaded.layouts == {"blocks.0": "tokens(1, 2x8)"}
    assert nl.grad_cam(loaded, x, 3, layer="blocks.0", interpolate=False).values.shape == (2, 1, 2, 8)
    with pytest.raises(nl.UnitError, match="no layer named 'blocks.9'"):
        nl.load_model(zoo.build("timm_vit")[0], layouts={"blocks.9": "nchw"})
    with pytest.raises(nl.NetloupeError, match="unknown layout"):
        nl.load_model(zoo.build("timm_vit")[0], layouts={"blocks.0": "tokenz"})
    misfit = nl.load_model(zoo.build("timm_vit")[0], layouts={"blocks.0": "tokens(1, 3x3)"})
    with pytest.raises(nl.NetloupeError, match=r"layer 'blocks.0' has output shape \(2, 17, 32\).*layouts="):
        nl.grad_cam(misfit, x, 3, layer="blocks.0")
    unfactored = nl.load_model(zoo.build("timm_vit")[0], layouts={"blocks.0": "tokens(2)"})  # 15 tokens, no grid
    with pytest.raises(nl.NetloupeError, match=r"\(2, 17, 32\) \(layout tokens\(2\)\), no spatial grid.*layouts="):
        nl.grad_cam(unfactored, x, 3, layer="blocks.0")
    assert infer(model, "blocks.0", (2, 17, 32), (32, 32)) == Layout("tokens", 1, (2, 8))  # the override
    assert infer(zoo.build("timm_vit")[0], "blocks.0", (2, 17, 32), (32, 32)) == Layout("tokens", 1, (4, 4))
