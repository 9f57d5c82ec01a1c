"""The README's contributing examples, each registered from this file alone (nothing in the
package edited) and checked in every place it reaches: a new attribution method, a CAM variant,
a backward rule, an objective, and a photo recipe with its command-line verb."""

import contextlib

import torch
import torch.nn as nn
from PIL import Image

import netloupe as nl
import zoo
from model_state import leaves_unchanged
from netloupe.attribution import METHODS
from netloupe.cli import build_parser, main


@contextlib.contextmanager
def registered(table, name):
    """Take a toy out of its registry again after the test, whatever happens."""
    try:
        yield
    finally:
        table.pop(name, None)


def _verbs():
    return build_parser()._subparsers._group_actions[0].choices


def test_an_attribution_method_is_one_decorated_function():
    from netloupe.attribution.engine import input_gradients, prepare
    from netloupe.attribution.registry import register

    with registered(METHODS, "gradient_x_sign"):
        @register(view="raw", caption="gradient x sign", quick={}, rank=25)
        def gradient_x_sign(model, inputs, target="top", *, forward_args=None):
            c = prepare(model, inputs, target, forward_args)
            grads, _ = input_gradients(c.loaded.module, c.xs, c.target, extra=c.extra)
            return c.result(tuple(g * x.sign() for g, x in zip(grads, c.xs)), "gradient_x_sign")

        assert list(METHODS).index("gradient_x_sign") == 2  # ranked after input_x_gradient (20)
        model, _ = zoo.build("resnet18")
        x = torch.randn(1, 3, 64, 64)
        by_name = nl.attribute(model, x, "gradient_x_sign", target=3).values
        assert torch.equal(by_name, nl.saliency(model, x, 3, abs=False).values * x.sign())
        sheet = nl.attribution.contact_sheet(model, x, ["saliency", "gradient_x_sign"])
        assert sheet.view("gradient_x_sign") == "raw" and sheet.to_pil().size[0] > 300
        assert "gradient_x_sign" in _verbs()["attribute"].format_help()
        assert METHODS["gradient_x_sign"].takes_layer is False and METHODS["grad_cam"].takes_layer is True
        explorer = nl.explorer.Explorer(model)
        assert "gradient_x_sign" in [m["name"] for m in explorer.class_methods()]


def test_a_cam_variant_is_one_weighting_function():
    from netloupe.attribution.cam import LayerMaps, cam

    with registered(METHODS, "positive_grad_cam"):
        @cam(rank=75)
        def positive_grad_cam(maps: LayerMaps):
            """Grad-CAM that counts only the positive part of each gradient."""
            return maps.grad.clamp(min=0).mean(dim=(2, 3))

        assert METHODS["positive_grad_cam"].takes_layer and "layer_input" in str(
            __import__("inspect").signature(positive_grad_cam))
        model, _ = zoo.build("resnet18")
        x = torch.randn(2, 3, 64, 64)
        with leaves_unchanged(model):
            ours = nl.attribute(model, x, "positive_grad_cam", target=[1, 4], layer="layer3", interpolate=False)
        with nl.probe(model, ["layer3"]) as p:
            out = model(x)
            out[torch.arange(2), torch.tensor([1, 4])].sum().backward()
        act, grad = p.activations["layer3"].detach(), p.gradients["layer3"]
        want = (grad.clamp(min=0).mean((2, 3))[:, :, None, None] * act).sum(1, keepdim=True).clamp(min=0)
        assert ours.values.shape == (2, 1, 4, 4) and torch.allclose(ours.values, want, atol=1e-6)
        vit, (xv,) = zoo.build("timm_vit")  # a ViT's token layout, read by the base, no reshape
        assert nl.attribute(vit, xv, "positive_grad_cam", target=0).values.shape == (2, 1, 32, 32)
        assert "positive_grad_cam" in _verbs()["attribute"].format_help()


def test_a_backward_rule_is_one_class():
    from netloupe.rules import RULES, Rule, register
    from netloupe.rules.relu import is_relu

    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(5, 4)
    with registered(RULES, "pass_relu"):
        @register
        class PassRelu(Rule):
            name = "pass_relu"

            def node_hook(self, node):
                return ("hook", lambda grad_inputs, grad_outputs: grad_outputs) if is_relu(node) else None

        with leaves_unchanged(net):
            ours = nl.saliency(net, x, 2, abs=False)  # the plain gradient for reference
            with nl.probe(net, rule="pass_relu"):
                xi = x.clone().requires_grad_(True)
                net(xi)[:, 2].sum().backward()
        linear = (net[2].weight[2] @ net[0].weight).expand(5, 4)  # ReLU as the identity: the linear model's
        assert torch.allclose(xi.grad, linear, atol=1e-6) and not torch.allclose(ours.values, linear)


def test_a_rule_can_replace_module_outputs_while_the_probe_is_active():
    from netloupe.rules import RULES, Rule, register

    class Twice(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.view_as(t)

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    net = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(2, 4, requires_grad=True)
    with registered(RULES, "twice_linear"):
        @register
        class TwiceLinear(Rule):
            name = "twice_linear"

            def module_hook(self, name, module):
                return (lambda m, args, out: Twice.apply(out)) if isinstance(module, nn.Linear) else None

        with leaves_unchanged(net):
            with nl.probe(net, rule="twice_linear"):
                net(x)[:, 0].sum().backward()
        assert torch.allclose(x.grad, 2 * net[0].weight[0].expand(2, 4))
        assert not net[0]._forward_hooks  # gone with the probe


def test_an_objective_is_one_decorated_function():
    from netloupe.optvis.objectives import Objective, objective

    @objective
    def channel_contrast(layer, a, b):
        """Channel a's mean minus channel b's: what excites one and not the other."""
        return lambda ctx: (ctx.layout(layer).channel(ctx.activation(layer), a).flatten(1).mean(1)
                            - ctx.layout(layer).channel(ctx.activation(layer), b).flatten(1).mean(1))

    model, _ = zoo.build("resnet18")
    o = channel_contrast("layer2", 3, 5)
    assert isinstance(o, Objective) and o.needs == ((None, "layer2"),) and o.name == "channel_contrast(layer2, 3, 5)"
    on_second = channel_contrast("layer2", 3, 5, index=1)
    loaded = nl.load_model(model, preprocess=nl.Preprocess(size=32, resize=None))
    with leaves_unchanged(model):
        r = nl.render(loaded, o + on_second, nl.optvis.param.image(32, n=2, seed=0), steps=3, progress=False)
    assert r.history.shape == (3, 2) and (r.history[:, 1] > r.history[:, 0]).all()  # element 1 gets it twice
    other = nl.load_model(zoo.build("resnet18")[0], preprocess=nl.Preprocess(size=32, resize=None))
    assert channel_contrast("layer2", 3, 5, model=other).needs == ((other, "layer2"),)


def test_a_photo_recipe_and_its_verb_are_one_file(tmp_path, capsys):
    from netloupe.verbs import IMAGE, VERBS, Arg, Option, image_paths, model_of, verb

    def amplify(model, photo, unit, *, steps=20, lr=0.01, seed=None, progress=True):
        """The photo nudged to excite ``unit`` more: DeepDream at one octave, of one unit."""
        return nl.dream(model, photo, unit, octaves=1, steps_per_octave=steps, lr=lr, seed=seed, progress=progress)

    with registered(VERBS, "amplify"):
        @verb("amplify", "a photo nudged to excite one unit more", function=amplify, out="netloupe-amplify",
              args=(IMAGE, Arg.of("--unit", required=True, help="the unit to excite, layer:channel")),
              options={"steps": Option("optimization steps", minimum=1),
                       "lr": Option("mean change of a pixel per step")})
        def _amplify(args, keywords):
            (path,) = image_paths([args.image])
            amplify(model_of(args), path, args.unit, **keywords).save(f"{args.out}/amplified.png")

        helped = " ".join(_verbs()["amplify"].format_help().split())
        assert "--steps N optimization steps (default: 20)" in helped and "--quiet" in helped
        out = tmp_path / "amp"
        assert main(["amplify", "chelsea", "--unit", "blocks.1:3", "--steps", "2", "--quiet", "--seed", "0",
                     "--out", str(out)]) == 0
        assert Image.open(out / "amplified.png").size == (451, 300)  # the photo's own size
        assert main(["amplify", "chelsea", "--unit", "blocks.1:3", "--steps", "0", "--out", str(tmp_path / "x")]) == 2
        assert "--steps: must be 1 or more" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert "amplify" not in _verbs()
