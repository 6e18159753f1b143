"""Test fixtures written by timm itself: reduced aligned Xceptions, their checkpoints and reference logits.

Run with a Python that has timm and PyTorch (not this package's environment: CI needs no PyTorch):

    python3 -m venv /work/venv-timm
    /work/venv-timm/bin/pip install torch==2.13.0 timm safetensors numpy pillow
    /work/venv-timm/bin/python benchmarks/timm_fixtures.py [--image PHOTO] [--out tests/fixtures/timm]

For each configuration in CONFIGS it builds timm's ``XceptionAligned`` with that block list (timm's
xception41 / xception71 lists, one middle-flow block, channels divided by 32, a 10-class head; the stem
rebuilt from timm's own layers with 8 channels, as timm fixes it at 32/64), gives every weight random values
and every BatchNormalization random statistics, and writes ``<name>.safetensors`` (its state dict),
``photo.png`` (the photo at 83x71, the input) and ``reference.json``: per configuration the options of
``keras_xception.xception_spec`` that build the same network, timm's trainable parameter count and its
logits for the photo (input scaled to [-1, 1], timm's mean and std of 0.5). tests/test_aligned.py loads them.
"""

import argparse
import glob
import json
import os
import sys
from functools import partial

import numpy as np

SIZE = (71, 83)  # height, width: odd and even feature maps follow, so the strided padding is exercised
CLASSES = 10
#: channel counts of timm's lists -> here (scale_channels(c, 1 / 32) in keras_xception.model.spec, written out)
C = {64: 8, 128: 8, 256: 8, 728: 24, 1024: 32, 1536: 48, 2048: 64}
CONFIGS = {
    # name: (pre-activation, entry-flow (channels, stride) as in timm's xception41 / xception71, BN epsilon)
    "aligned41": (False, [(128, 2), (256, 2), (728, 2)], 1e-3),
    "aligned71": (False, [(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)], 1e-3),
    "preact41": (True, [(128, 2), (256, 2), (728, 2)], 1e-5),
}


def import_timm():
    """timm, also where PyPI's torchvision (linked against CUDA) cannot load its operators next to a CPU torch:
    torchvision's import then fails registering fake kernels for them; timm needs none of them."""
    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        saved = torch.library.register_fake, torch.library.register_autograd
        torch.library.register_fake = torch.library.register_autograd = lambda *a, **k: lambda f: f
        try:
            import torchvision  # noqa: F401
        finally:
            torch.library.register_fake, torch.library.register_autograd = saved
    import timm

    return timm


def randomize(model, seed):
    """Random weights (scaled by fan-in) and random BatchNorm statistics, in place."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=g))
                module.bias.copy_(0.2 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                w = module.weight
                w.copy_(torch.randn(w.shape, generator=g) * (2.0 / (w[0].numel())) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
    return model.eval()


def reduced_model(timm, preact, entry, eps):
    """timm's XceptionAligned with ``entry`` + one middle block + the exit flow, channels by ``C``, stem of 8."""
    import torch.nn as nn
    from timm.layers import ConvNormAct, create_conv2d
    from timm.models.xception_aligned import XceptionAligned

    cfg, prev = [], 8
    for ch, stride in entry:
        cfg.append(dict(in_chs=prev, out_chs=C[ch], stride=stride))
        prev = C[ch]
    cfg.append(dict(in_chs=C[728], out_chs=C[728], stride=1))
    cfg.append(dict(in_chs=C[728], out_chs=(C[728], C[1024], C[1024]), stride=2))
    last = dict(in_chs=C[1024], out_chs=(C[1536], C[1536], C[2048]), stride=1, no_skip=True)
    cfg.append(last if preact else dict(last, start_with_relu=False))
    norm = partial(nn.BatchNorm2d, eps=eps)
    model = XceptionAligned(cfg, num_classes=CLASSES, preact=preact, norm_layer=norm)
    layer_args = dict(act_layer=nn.ReLU, norm_layer=norm)
    model.stem = nn.Sequential(
        ConvNormAct(3, 8, kernel_size=3, stride=2, **layer_args),
        create_conv2d(8, 8, kernel_size=3, stride=1) if preact else ConvNormAct(8, 8, kernel_size=3, **layer_args),
    )
    return model


def default_photo():
    found = glob.glob("/work/main/.venv/lib/python3*/site-packages/matplotlib/mpl-data/sample_data/grace_hopper.jpg")
    if not found:
        raise SystemExit("No photo found: pass --image PHOTO (e.g. matplotlib's sample_data/grace_hopper.jpg).")
    return found[0]


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=None, help="the photo (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "timm"))
    args = parser.parse_args(argv)

    import torch
    from PIL import Image
    from safetensors.torch import save_file

    timm = import_timm()
    os.makedirs(args.out, exist_ok=True)
    photo = Image.open(args.image or default_photo()).convert("RGB").resize(SIZE[::-1], Image.BICUBIC)
    photo.save(os.path.join(args.out, "photo.png"))
    x = torch.from_numpy(np.asarray(photo, np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]  # NCHW
    reference = {"timm": timm.__version__, "torch": torch.__version__, "input_size": SIZE, "models": {}}
    for seed, (name, (preact, entry, eps)) in enumerate(CONFIGS.items()):
        model = randomize(reduced_model(timm, preact, entry, eps), seed)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(args.out, f"{name}.safetensors"))
        with torch.no_grad():
            logits = model(x)[0].double().numpy()
        reference["models"][name] = dict(
            spec=dict(
                kind="aligned_preact" if preact else "aligned",
                entry_flow_blocks=len(entry),
                middle_flow_blocks=1,
                width_multiplier=1 / 32,
                bn_epsilon=eps,
            ),
            classes=CLASSES,
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
            logits=[float(v) for v in logits],
        )
        print(f"{name}: {reference['models'][name]['trainable_params']} params, logits {np.round(logits, 3)}")
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)


if __name__ == "__main__":
    main()
