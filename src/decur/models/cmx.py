"""CMX (Zhang et al. 2022, "CMX: Cross-Modal Fusion for RGB-X Semantic Segmentation with Transformers").

Written from the paper's description. Two MiT branches (RGB and X, here HHA) run stage by stage; after every stage

1. the cross-modal feature rectification module (CM-FRM) lets each branch correct the other: channel weights from an
   MLP over the average- and max-pooled features of both branches, spatial weights from two 1x1 convolutions over
   their concatenation, both through a sigmoid; ``a ← a + λ_C · w_C(b) ⊙ b + λ_S · w_S(b) ⊙ b`` and symmetrically
   (λ_C = λ_S = 0.5). The rectified maps continue into the next stage of their branch.
2. the feature fusion module (FFM) merges the pair into one map for the decoder: a cross path (per branch a linear
   embedding split into a residual and an interactive half; efficient cross-attention in which each branch's
   queries read the other branch's global context ``softmax(KᵀV)``; concatenation, projection back, residual and
   LayerNorm), then a mixed channel embedding (1x1 convolution of the concatenated pair with a 3x3 depth-wise
   convolution inside, a 1x1 skip, BatchNorm).

SegFormer's all-MLP decoder turns the four fused maps into class scores at 1/4 resolution, upsampled to the input.

Missing modality: when only one branch's image is given, nothing is rectified or fused (there is nothing to rectify
with, and zeros are not fused in its place): the present branch's four stage outputs go to the decoder directly, and
a warning says so once per model. A CMX trained on both modalities is not trained for that input; the mode exists so
that missing-sensor evaluation runs and is reported, not so that it scores well.
"""

from __future__ import annotations

import warnings
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decur.models.mit import MiT


class Rectification(nn.Module):
    """Cross-modal feature rectification (CM-FRM) of one stage.

    Args:
        dim: Channels of both branches at this stage.
        lambda_channel: Weight λ_C of the channel-wise rectification.
        lambda_spatial: Weight λ_S of the spatial-wise rectification.

    """

    def __init__(self, dim: int, lambda_channel: float = 0.5, lambda_spatial: float = 0.5) -> None:
        super().__init__()
        self.lambda_channel, self.lambda_spatial = lambda_channel, lambda_spatial
        self.channel = nn.Sequential(
            nn.Linear(4 * dim, 4 * dim), nn.ReLU(inplace=True), nn.Linear(4 * dim, 2 * dim), nn.Sigmoid()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(2 * dim, dim, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, 2, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Both maps ``N x C x H x W``, each rectified by the other."""
        pair = torch.cat([a, b], dim=1)
        pooled = torch.cat([pair.mean(dim=(2, 3)), pair.amax(dim=(2, 3))], dim=1)
        channel_a, channel_b = self.channel(pooled)[:, :, None, None].chunk(2, dim=1)
        spatial_a, spatial_b = self.spatial(pair).chunk(2, dim=1)
        from_b = (self.lambda_channel * channel_b + self.lambda_spatial * spatial_b) * b
        from_a = (self.lambda_channel * channel_a + self.lambda_spatial * spatial_a) * a
        return a + from_b, b + from_a


class CrossAttention(nn.Module):
    """Efficient cross-attention: each branch's queries read the other branch's context ``softmax(KᵀV)``.

    The context is a ``d x d`` matrix per head (``d`` = channels per head), so the cost is linear in the number of
    tokens, as in the paper.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"cross-attention width {dim} is not divisible by {heads} heads")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.key_value = nn.ModuleList(nn.Linear(dim, 2 * dim, bias=False) for _ in range(2))

    def _split(self, x: Tensor) -> Tensor:
        n, tokens, c = x.shape
        return x.view(n, tokens, self.heads, c // self.heads).transpose(1, 2)  # N x h x L x d

    def _context(self, i: int, x: Tensor) -> Tensor:
        key, value = self.key_value[i](x).chunk(2, dim=-1)
        return (self._split(key).transpose(-2, -1) @ self._split(value) * self.scale).softmax(dim=-2)  # N x h x d x d

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Token sequences ``N x L x C`` of both branches → the attended sequences."""
        n, tokens, c = a.shape
        read_b = self._split(a) @ self._context(1, b)
        read_a = self._split(b) @ self._context(0, a)
        return (
            read_b.transpose(1, 2).reshape(n, tokens, c),
            read_a.transpose(1, 2).reshape(n, tokens, c),
        )


class Fusion(nn.Module):
    """Feature fusion module (FFM) of one stage: cross path, then mixed channel embedding.

    Args:
        dim: Channels of both branches at this stage (and of the fused output).
        heads: Cross-attention heads (the MiT stage's head count).

    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(2))
        self.attention = CrossAttention(dim, heads)
        self.project = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(2))
        self.norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.skip = nn.Conv2d(2 * dim, dim, kernel_size=1, bias=False)
        self.mix = nn.Sequential(
            nn.Conv2d(2 * dim, dim, kernel_size=1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, kernel_size=1),
            nn.BatchNorm2d(dim),
        )
        self.out_norm = nn.BatchNorm2d(dim)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """The fused map ``N x C x H x W`` of the pair."""
        n, c, h, w = a.shape
        tokens = [t.flatten(2).transpose(1, 2) for t in (a, b)]  # N x L x C
        halves = [F.relu(e(t)).chunk(2, dim=-1) for e, t in zip(self.embed, tokens, strict=True)]  # residual, inter.
        residual = [h[0] for h in halves]
        attended = self.attention(halves[0][1], halves[1][1])
        out = [
            norm(t + proj(torch.cat([r, x], dim=-1)))
            for norm, proj, t, r, x in zip(self.norm, self.project, tokens, residual, attended, strict=True)
        ]
        pair = torch.cat(out, dim=-1).transpose(1, 2).reshape(n, 2 * c, h, w)
        return cast(Tensor, self.out_norm(self.skip(pair) + self.mix(pair)))


class MLPDecoder(nn.Module):
    """SegFormer's all-MLP decoder: per-stage linear embedding, upsampling to 1/4, fusion, classification.

    Args:
        widths: Channels of the four input maps.
        dim: Embedding width (CMX: 512; SegFormer: 256 for B0/B1, 768 for B2-B5).
        num_classes: Output classes.
        dropout: Dropout before the classifier (0.1 as SegFormer).

    """

    def __init__(self, widths: list[int], dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Conv2d(w, dim, kernel_size=1) for w in widths)  # a linear layer per pixel
        self.fuse = nn.Sequential(
            nn.Conv2d(len(widths) * dim, dim, kernel_size=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classify = nn.Conv2d(dim, num_classes, kernel_size=1)

    def forward(self, maps: list[Tensor]) -> Tensor:
        """Class scores at the resolution of the first (stride 4) map."""
        size = maps[0].shape[-2:]
        up = [F.interpolate(e(m), size=size, mode="bilinear") for e, m in zip(self.embed, maps, strict=True)]
        return cast(Tensor, self.classify(self.dropout(self.fuse(torch.cat(up, dim=1)))))


class CMX(nn.Module):
    """CMX: two MiT branches with rectification and fusion after every stage, and SegFormer's decoder.

    Args:
        encoders: The two branches, ``{"rgb": MiT, "hha": MiT}`` (same MiT size; the first is the RGB branch).
        num_classes: Output classes.
        decoder_dim: Width of the all-MLP decoder (CMX: 512).

    """

    def __init__(self, encoders: dict[str, nn.Module], num_classes: int, decoder_dim: int = 512) -> None:
        super().__init__()
        if len(encoders) != 2:
            raise ValueError(f"CMX fuses two modalities, got {list(encoders)}")
        branches = [cast(MiT, e) for e in encoders.values()]
        if not all(isinstance(e, MiT) for e in branches) or branches[0].embed_dims != branches[1].embed_dims:
            raise ValueError("CMX needs two MiT encoders of the same size (model.arch mit_b0 ... mit_b5)")
        self.encoders = nn.ModuleDict(encoders)
        widths = branches[0].embed_dims
        heads = [getattr(branches[0], f"block{i + 1}")[0].attn.num_heads for i in range(4)]
        self.rectify = nn.ModuleList(Rectification(w) for w in widths)
        self.fuse = nn.ModuleList(Fusion(w, h) for w, h in zip(widths, heads, strict=True))
        self.decoder = MLPDecoder(widths, decoder_dim, num_classes)
        self._warned = False

    def fused_stages(self, x: dict[str, Tensor]) -> list[Tensor]:
        """The four fused maps (or one branch's stage outputs when the other modality is missing)."""
        names = list(self.encoders)
        present = [m for m in names if m in x]
        if not present:
            raise KeyError(f"CMX needs the images of {names}, got {list(x)}")
        if len(present) == 1:
            if not self._warned:
                warnings.warn(
                    f"CMX: modality {next(m for m in names if m not in x)!r} missing; decoding the {present[0]!r} "
                    "branch alone (no rectification, no fusion)",
                    stacklevel=2,
                )
                self._warned = True
            return cast(MiT, self.encoders[present[0]]).forward_stages(x[present[0]])
        a, b = x[names[0]], x[names[1]]
        enc_a, enc_b = cast(MiT, self.encoders[names[0]]), cast(MiT, self.encoders[names[1]])
        fused = []
        for i in range(4):
            a, b = self.rectify[i](enc_a.stage(i, a), enc_b.stage(i, b))
            fused.append(self.fuse[i](a, b))
        return fused

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        """Class scores ``N x num_classes x H x W`` at the input resolution."""
        size = next(iter(x.values())).shape[-2:]
        return F.interpolate(self.decoder(self.fused_stages(x)), size=size, mode="bilinear")
