"""SegFormer's Mix Transformer (MiT-B0 … B5) as a decur encoder, with SegFormer's original parameter names.

The network is segmentation-models-pytorch's ``MixVisionTransformer``: a pure-PyTorch MiT whose ``state_dict`` keys
are those of SegFormer's original ``mit_bX`` backbone (``patch_embed1.proj.weight``, ``block1.0.attn.q.weight``,
``norm4.weight``, ...), which the public SegFormer and CMX code bases load. decur adds nothing with parameters to it,
so a decur MiT encoder's state dict *is* a SegFormer checkpoint (without the ImageNet classifier ``head.*``).

Why this library: timm has no MiT; Hugging Face ``transformers``' SegFormer renames every parameter
(``encoder.block.0.0.attention.self.query``) and would need a key map both ways; mmsegmentation's MiT needs mmcv and
mmengine. segmentation-models-pytorch keeps the original keys, is plain PyTorch with timm as its only model
dependency, and is maintained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from segmentation_models_pytorch.encoders.mix_transformer import MixVisionTransformer, mix_transformer_encoders
from torch import Tensor

from decur.catalog import MIT_ARCHS, is_mit


class MiT(MixVisionTransformer):
    """A Mix Transformer whose ``forward`` returns the pooled last-stage feature (``N x num_features``).

    ``forward_stages`` returns the four stage outputs (strides 4, 8, 16, 32) for dense heads; ``stage(i, x)`` runs
    one stage (patch embedding, blocks, norm), which is what CMX interleaves with its fusion modules.

    Args:
        arch: One of ``MIT_ARCHS`` (recorded; the sizes come in ``params``).
        in_chans: Input bands.
        params: ``MixVisionTransformer`` arguments (embed_dims, depths, ...).

    """

    def __init__(self, arch: str, in_chans: int, **params: Any) -> None:
        super().__init__(in_chans=in_chans, **params)
        self.arch = arch
        self.embed_dims: list[int] = list(params["embed_dims"])
        self.num_features = self.embed_dims[-1]

    def stage(self, i: int, x: Tensor) -> Tensor:
        """Stage ``i`` (0-3) on an ``N x C x H x W`` map (the image for ``i = 0``)."""
        x = getattr(self, f"patch_embed{i + 1}")(x)
        x = getattr(self, f"block{i + 1}")(x)
        return getattr(self, f"norm{i + 1}")(x).contiguous()

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The four stage outputs ``N x C_i x H/s_i x W/s_i``, ``s = 4, 8, 16, 32``."""
        outs = []
        for i in range(4):
            x = self.stage(i, x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """Global average of the last stage: ``N x num_features``."""
        return self.forward_stages(x)[-1].mean(dim=(2, 3))


def mit_widths(arch: str) -> list[int]:
    """Channel widths of the four stages of ``arch``."""
    return list(mix_transformer_encoders[arch]["params"]["embed_dims"])


def create_mit(arch: str, in_chans: int = 3, drop_path_rate: float = 0.1) -> torch.nn.Module:
    """A randomly initialised MiT (SegFormer's configuration of ``arch``; stochastic depth 0.1 as SegFormer).

    Raises:
        ValueError: If ``arch`` is not one of ``MIT_ARCHS``.

    """
    if not is_mit(arch):
        raise ValueError(f"unknown MiT architecture {arch!r}; one of {MIT_ARCHS}")
    params = dict(mix_transformer_encoders[arch]["params"])
    for key in ("out_channels", "patch_size"):  # smp encoder-wrapper arguments, not the network's
        params.pop(key, None)
    params["drop_path_rate"] = drop_path_rate
    return MiT(arch, in_chans, **params)


def read_segformer_weights(path: str | Path) -> dict[str, Tensor]:
    """A SegFormer-layout MiT state dict from ``path`` (``.pth``/``.pt``/``.bin`` or ``.safetensors``).

    Accepts SegFormer's ImageNet checkpoints (``mit_b2.pth``: keys at the top level, classifier ``head.*``), files
    wrapping them in ``state_dict`` / ``model``, and mmseg-style ``backbone.`` prefixes; ``head.*`` is dropped.

    Raises:
        FileNotFoundError: If ``path`` does not exist.

    """
    from decur.models.encoder import read_weights_file  # (encoder imports this module)

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: SegFormer weights file not found (give the mit_bX.pth you downloaded)")
    return read_weights_file(path, drop=("head.",))


def load_segformer_weights(encoder: torch.nn.Module, path: str | Path) -> None:
    """Load SegFormer-layout weights into a MiT with strict key matching.

    A first convolution of another band count is the only tolerated difference: its kernel is averaged over the
    input channels and repeated (the usual way of starting a non-RGB input from RGB weights).

    Raises:
        ValueError: If the keys or shapes do not fit (the message names the file, the arch and the keys).

    """
    state = read_segformer_weights(path)
    first = "patch_embed1.proj.weight"
    own = encoder.state_dict()
    if first in state and first in own and state[first].shape[1] != own[first].shape[1]:
        w = state[first]
        state[first] = w.mean(dim=1, keepdim=True).repeat(1, own[first].shape[1], 1, 1)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a SegFormer {getattr(encoder, 'arch', 'MiT')} state dict "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}); "
            "give the ImageNet mit_bX.pth of the same size as model.arch"
        )
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise ValueError(
            f"{path}: shapes differ from {getattr(encoder, 'arch', 'MiT')} at {bad[:3]} "
            f"({tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}): another MiT size?"
        )
    encoder.load_state_dict(state, strict=True)
