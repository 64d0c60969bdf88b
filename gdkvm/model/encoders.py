"""ResNet encoders of GDKVM: the key/query encoder (ResNet-50 style, 1-channel frame) and the value encoder
(ResNet-18 style on the frame plus the previous prediction).

Both are plain torch ResNets cut after ``layer3`` (stride 16), with torchvision's module names (``conv1``, ``bn1``,
``layer1.0.conv1``, ``downsample.0`` ...), so an ImageNet state dict saved from torchvision loads with
``load_backbone_weights`` (``layer4``/``fc`` are ignored; a 3-channel ``conv1`` is averaged to one channel for the key
encoder and left at random init for the value encoder, as the paper does). Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from gdkvm.errors import InputError
from gdkvm.model.blocks import FeatureFuser

logger = logging.getLogger(__name__)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs with batch norm.

    Args:
        in_dim: input channels.
        planes: output channels.
        stride: stride of the first conv (and of the shortcut).
    """

    expansion = 1

    def __init__(self, in_dim: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_dim, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_dim, H, W]. Returns: [B, planes, H/stride, W/stride]."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """ResNet-50 block: 1x1 reduce, 3x3 (strided), 1x1 expand (x4), batch norm after each.

    Args:
        in_dim: input channels.
        planes: width of the inner 3x3 conv; the output has ``4 * planes`` channels.
        stride: stride of the 3x3 conv (and of the shortcut).
    """

    expansion = 4

    def __init__(self, in_dim: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_dim, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_dim, H, W]. Returns: [B, 4 * planes, H/stride, W/stride]."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


def _shortcut(in_dim: int, out_dim: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_dim == out_dim:
        return None
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, stride=stride, bias=False), nn.BatchNorm2d(out_dim))


# name -> (block type, default depths of layer1..layer3)
ENCODER_ARCHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6)),
    "resnet50": (Bottleneck, (3, 4, 6)),
    "resnet101": (Bottleneck, (3, 4, 23)),
}


class ResNetTrunk(nn.Module):
    """Stem + layer1..layer3 of a ResNet: features at strides 4, 8 and 16.

    Args:
        arch: one of ``ENCODER_ARCHS`` (block type and default depths).
        in_channels: input channels (1 for the key encoder, 1 + C for the value encoder).
        width: stem width and base width of layer1 (64 in the standard ResNets); layer2/3 use 2x and 4x.
        depths: blocks in layer1..layer3, or None for the architecture's defaults.
    """

    def __init__(self, arch: str, in_channels: int, width: int = 64, depths: Sequence[int] | None = None) -> None:
        super().__init__()
        if arch not in ENCODER_ARCHS:
            raise ValueError(f"unknown encoder {arch!r}; choose one of {sorted(ENCODER_ARCHS)}")
        block, default_depths = ENCODER_ARCHS[arch]
        depths = tuple(default_depths if depths is None else depths)
        if len(depths) != 3 or min(depths) < 1:
            raise ValueError(f"depths must be three positive ints (layer1..layer3), got {depths}")
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_dim = width
        layers = []
        for i, (planes, depth) in enumerate(zip((width, 2 * width, 4 * width), depths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_dim, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_dim = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.out_dims = tuple(p * block.expansion for p in (width, 2 * width, 4 * width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode images.

        Args:
            x: [B, in_channels, H, W] normalised images, H and W multiples of 16.

        Returns:
            f16: [B, out_dims[2], H/16, W/16]; f8: [B, out_dims[1], H/8, W/8]; f4: [B, out_dims[0], H/4, W/4].
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        return self.layer3(f8), f8, f4


class ValueEncoder(nn.Module):
    """Value encoder: a ResNet trunk on [frame, previous foreground probabilities], fused with the pixel features.

    Args:
        arch: ResNet architecture name (``ENCODER_ARCHS``).
        mask_channels: channels of the previous prediction (C, or 0 without value feedback).
        width: ResNet base width.
        depths: blocks per layer, or None for the defaults.
        pix_dim: channels of the key encoder's pixel features.
        value_dim: output value channels.
    """

    def __init__(
        self,
        arch: str,
        mask_channels: int,
        width: int,
        depths: Sequence[int] | None,
        pix_dim: int,
        value_dim: int,
    ) -> None:
        super().__init__()
        self.mask_channels = mask_channels
        self.trunk = ResNetTrunk(arch, 1 + mask_channels, width, depths)
        self.fuser = FeatureFuser(pix_dim, self.trunk.out_dims[2], value_dim)

    def forward(self, image: torch.Tensor, prev_prob: torch.Tensor | None, pix: torch.Tensor) -> torch.Tensor:
        """Encode one frame's value.

        Args:
            image: [B, 1, H, W] normalised frame.
            prev_prob: [B, C, H, W] foreground probabilities of the previous frame (zeros at frame 0), or None
                when the encoder has no mask channels.
            pix: [B, pix_dim, H/16, W/16] pixel features of the same frame.

        Returns:
            [B, value_dim, H/16, W/16] value features.
        """
        x = image if prev_prob is None else torch.cat([image, prev_prob.to(image.dtype)], dim=1)
        f16, _, _ = self.trunk(x)
        return self.fuser(pix, f16)


def load_backbone_weights(trunk: ResNetTrunk, path: str | Path, average_rgb: bool) -> None:
    """Load a local torchvision-style ResNet state dict into a trunk (layer4/fc and unknown keys are ignored).

    Args:
        trunk: the encoder trunk to fill.
        path: a ``.pt``/``.pth`` file holding a state dict (optionally under a ``state_dict`` key).
        average_rgb: if the file's ``conv1`` has 3 input channels and the trunk 1, average them; otherwise a
            ``conv1`` whose input channels differ is skipped (kept at random init).

    Raises:
        InputError: the file is missing, unreadable, not a state dict, or a tensor's shape does not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("backbone weights file not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/format error becomes one readable line
        raise InputError(f"cannot read backbone weights ({type(exc).__name__}: {exc})", path) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("backbone weights must be a state dict of tensors", path)
    own = trunk.state_dict()
    loaded = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.")
        if name not in own:
            continue
        if name == "conv1.weight" and tensor.shape[1] != own[name].shape[1]:
            if average_rgb and tensor.shape[1] == 3 and own[name].shape[1] == 1:
                tensor = tensor.mean(dim=1, keepdim=True)
            else:
                continue
        if tensor.shape != own[name].shape:
            raise InputError(f"{name} has shape {tuple(tensor.shape)}, the model needs {tuple(own[name].shape)}", path)
        loaded[name] = tensor
    if not loaded:
        raise InputError("no tensor in the file matches the encoder (expected torchvision ResNet names)", path)
    trunk.load_state_dict(loaded, strict=False)
    logger.info("loaded %d of %d backbone tensors from %s", len(loaded), len(own), path)
