"""Models for the tracing tests, the benchmark and the CLI: built from config objects, no weights.

Every factory returns a fresh model in eval mode (pass ``train=True`` for training mode). The
``transformers`` models are constructed from their config classes with randomly initialised
weights; nothing is downloaded (``HF_HUB_OFFLINE=1`` is set before transformers is imported, and
no ``from_pretrained`` is called). Each has a default-config factory and a ``*_small`` factory:
the same kernel/stride/padding structure with few channels and one block per stage, so that the
valid input domain is the same while eager forwards are cheap. The U-Nets at the end are written
here: concatenating an upsampled map with its skip connection makes the domain have holes
(H and W must be divisible by a power of two).

``MODELS`` lists them with their input specifications (symbolic shapes as strings, the syntax of
``symconv trace --input``) and the grids the oracle checks. Factories take no required argument,
so ``symconv trace tests/trace_models.py:resnet_small --input N,3,H,W`` works.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["MODELS", "ModelCase", "build", "resnet", "resnet_small", "convnext", "convnext_small",
           "mobilenet_v2", "mobilenet_v2_small", "efficientnet", "efficientnet_small", "regnet",
           "regnet_small", "segformer", "segformer_small", "wav2vec2_features",
           "wav2vec2_features_small", "UNet", "unet_upsample", "unet_transpose", "unet_resize"]


def _mode(model: nn.Module, train: bool) -> nn.Module:
    model.train(train)
    return model


def _hf():
    import transformers
    return transformers


def _seeded(fn: Callable) -> Callable:
    """Same random weights every call (the oracle and the tests see the same model)."""
    def wrapper(train: bool = False) -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return _mode(fn(), train)
    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# ---- transformers vision models (input N,3,H,W) ---------------------------------------------

@_seeded
def resnet():
    """ResNet-50 layout (transformers ResNetConfig defaults)."""
    T = _hf()
    return T.ResNetModel(T.ResNetConfig())


@_seeded
def resnet_small():
    """ResNet with the ResNet-50 strides, 8 channels per stage and one block per stage."""
    T = _hf()
    return T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8],
                                        depths=[1, 1, 1, 1]))


@_seeded
def convnext():
    """ConvNeXt-T layout (ConvNextConfig defaults)."""
    T = _hf()
    return T.ConvNextModel(T.ConvNextConfig())


@_seeded
def convnext_small():
    T = _hf()
    return T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1]))


@_seeded
def mobilenet_v2():
    """MobileNetV2 1.0 (TF-style 'same' padding computed from the input size at every layer)."""
    T = _hf()
    return T.MobileNetV2Model(T.MobileNetV2Config())


@_seeded
def mobilenet_v2_small():
    """MobileNetV2 with depth multiplier 0.1 (every width rounds to the minimum 8 channels);
    its 17 inverted-residual blocks are fixed by the architecture."""
    T = _hf()
    return T.MobileNetV2Model(T.MobileNetV2Config(depth_multiplier=0.1, min_depth=8))


@_seeded
def efficientnet():
    """EfficientNet with the EfficientNetConfig defaults (the B7 widths)."""
    T = _hf()
    return T.EfficientNetModel(T.EfficientNetConfig())


@_seeded
def efficientnet_small():
    """EfficientNet with the same kernels/strides per stage, widths divided down, one repeat
    (hidden_dim is round_filters(1280) at this width, as the model requires)."""
    T = _hf()
    return T.EfficientNetModel(T.EfficientNetConfig(
        width_coefficient=0.1, depth_coefficient=0.1, depth_divisor=8, hidden_dim=128))


@_seeded
def regnet():
    """RegNetY-040 layout (RegNetConfig defaults)."""
    T = _hf()
    return T.RegNetModel(T.RegNetConfig())


@_seeded
def regnet_small():
    T = _hf()
    return T.RegNetModel(T.RegNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8],
                                        depths=[1, 1, 1, 1], groups_width=8))


@_seeded
def segformer():
    """SegFormer-B0 encoder (SegformerConfig defaults): overlapping patch embeddings and
    attention whose keys come from a strided 'sequence reduction' convolution."""
    T = _hf()
    return T.SegformerModel(T.SegformerConfig())


@_seeded
def segformer_small():
    T = _hf()
    return T.SegformerModel(T.SegformerConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1],
                                              num_attention_heads=[1, 1, 1, 1],
                                              decoder_hidden_size=8))


# ---- audio (input N,L) -------------------------------------------------------------------------

@_seeded
def wav2vec2_features():
    """The Wav2Vec2 feature encoder (7 strided 1-D convolutions, GroupNorm after the first);
    input_values of shape (N, L)."""
    T = _hf()
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2FeatureEncoder
    return Wav2Vec2FeatureEncoder(T.Wav2Vec2Config())


@_seeded
def wav2vec2_features_small():
    T = _hf()
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2FeatureEncoder
    return Wav2Vec2FeatureEncoder(T.Wav2Vec2Config(conv_dim=(8,) * 7))


# ---- U-Nets written here -----------------------------------------------------------------------

class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class UNet(nn.Module):
    """A U-Net of ``depth`` levels: max-pool down, then up (nearest upsampling, a stride-2
    ConvTranspose2d, or interpolation to the skip's size), concatenate with the skip, convolve.

    With ``up="upsample"`` or ``"transpose"`` the concatenation needs the upsampled map to have
    the skip's size: H and W must be multiples of 2**depth (holes in the domain). With
    ``up="resize"`` the decoder interpolates to the skip's size and every H, W >= 2**depth works.
    """

    def __init__(self, in_channels: int = 3, width: int = 4, depth: int = 2,
                 up: str = "upsample") -> None:
        super().__init__()
        if up not in ("upsample", "transpose", "resize"):
            raise ValueError(f"up must be 'upsample', 'transpose' or 'resize', got {up!r}")
        self.up_kind = up
        self.down = nn.ModuleList()
        self.pool = nn.MaxPool2d(2)
        c = in_channels
        chans = []
        for i in range(depth):
            self.down.append(_Block(c, width * 2 ** i))
            c = width * 2 ** i
            chans.append(c)
        self.bottom = _Block(c, c * 2)
        c = c * 2
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for skip in reversed(chans):
            if up == "transpose":
                self.up.append(nn.ConvTranspose2d(c, skip, 2, stride=2))
            elif up == "upsample":
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, skip, 1)))
            else:
                self.up.append(nn.Conv2d(c, skip, 1))
            self.dec.append(_Block(2 * skip, skip))
            c = skip
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            if self.up_kind == "resize":
                x = F.interpolate(up(x), size=skip.shape[-2:], mode="nearest")
            else:
                x = up(x)
            x = dec(torch.cat([x, skip], dim=1))
        return self.head(x)


@_seeded
def unet_upsample():
    return UNet(up="upsample")


@_seeded
def unet_transpose():
    return UNet(up="transpose")


@_seeded
def unet_resize():
    return UNet(up="resize")


# ---- registry ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelCase:
    """A model of the tracing tests: factories, its inputs and the grids the oracle checks.

    ``inputs`` are shapes in ``--input`` syntax. ``grid`` (default run) and ``slow_grid`` map
    every symbol to the values tried; the grid is their product.
    """
    name: str
    small: str                      # factory name in this module (default run)
    default: str | None             # factory of the default config (slow run), None if same
    inputs: tuple[str, ...]
    grid: dict
    slow_grid: dict

    def factory(self, small: bool = True) -> str:
        return f"tests.trace_models:{self.small if small or not self.default else self.default}"


def _img(small_hw: list, slow_hw: list, n=(0, 1, 2)) -> tuple[dict, dict]:
    return ({"N": [1], "H": small_hw, "W": small_hw},
            {"N": list(n), "H": slow_hw, "W": slow_hw})


_HW = list(range(0, 41))
_SPARSE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 31, 32, 33, 40]

MODELS: dict[str, ModelCase] = {
    c.name: c for c in [
        ModelCase("resnet", "resnet_small", "resnet", ("N,3,H,W",), *_img(_SPARSE, _HW)),
        ModelCase("convnext", "convnext_small", "convnext", ("N,3,H,W",), *_img(_SPARSE, _HW)),
        ModelCase("mobilenet_v2", "mobilenet_v2_small", "mobilenet_v2", ("N,3,H,W",),
                  *_img(_SPARSE, _HW)),
        ModelCase("efficientnet", "efficientnet_small", "efficientnet", ("N,3,H,W",),
                  *_img(_SPARSE, _HW)),
        ModelCase("regnet", "regnet_small", "regnet", ("N,3,H,W",), *_img(_SPARSE, _HW)),
        ModelCase("segformer", "segformer_small", "segformer", ("N,3,H,W",),
                  *_img(_SPARSE, _HW)),
        ModelCase("wav2vec2_features", "wav2vec2_features_small", "wav2vec2_features", ("N,L",),
                  {"N": [1], "L": list(range(0, 800, 7))},
                  {"N": [0, 1, 2], "L": list(range(0, 2001))}),
        ModelCase("unet_upsample", "unet_upsample", None, ("N,3,H,W",), *_img(_SPARSE, _HW)),
        ModelCase("unet_transpose", "unet_transpose", None, ("N,3,H,W",), *_img(_SPARSE, _HW)),
        ModelCase("unet_resize", "unet_resize", None, ("N,3,H,W",), *_img(_SPARSE, _HW)),
    ]}


def build(factory: str, train: bool = False) -> nn.Module:
    """The model a ``module:function`` factory name builds (in this process)."""
    import importlib
    mod, _, fn = factory.partition(":")
    return getattr(importlib.import_module(mod), fn)(train=train)
