"""The numbers of Algorithm 2 (``decur.explain``).

Embeddings, alignment per batch, GradCAM, saliency statistics, Integrated Gradients, the dimension t-SNE and the
synthetic data's ground-truth check.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from decur.augment import ViewPipeline
from decur.config import ConfigError
from decur.data.synthetic import SyntheticMultimodal
from decur.evaluate.metrics import alignment
from decur.evaluate.probe import grouped_r2, probe_r2

S2_BAND_NAMES = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
"""Sentinel-2 L1C band order of decur's readers (SSL4EO-S12, BigEarthNet with B10 inserted, the synthetic data)."""


def band_names(modality: str, bands: int) -> list[str]:
    """The dataset's band names for plots and ``explain.json``."""
    if bands == 13 and modality in ("optical", "s2", "s2l1c"):
        return S2_BAND_NAMES
    if bands == 12 and modality in ("s2", "s2l2a"):
        return [b for b in S2_BAND_NAMES if b != "B10"]
    if bands == 2 and modality in ("sar", "s1", "s1grd"):
        return ["VV", "VH"]
    if bands == 3 and modality in ("rgb", "s2rgb"):
        return ["R", "G", "B"]
    if bands == 3 and modality == "hha":
        return ["disparity", "height", "angle"]
    return [f"band {i + 1}" for i in range(bands)]


@dataclass
class ExplainConfig:
    """How ``decur explain`` computes; the defaults follow the paper's Algorithm 2."""

    samples: int = 256
    """Evaluation-set size: the saliency statistics cover all of them."""
    batch_size: int = 32
    """Images per GradCAM / Integrated-Gradients batch (the batch standardisation of ``BN(f(x))`` runs over it)."""
    alignment_batches: int = 4
    """Training-style batches of the alignment histogram (Fig. 8 shows four)."""
    standardize: bool = True
    """Scalar outputs from the batch-standardised embedding ``BN(f(x))`` (the paper); false: the raw output."""
    cam_relu: bool = False
    """ReLU on the GradCAM attributions (captum's option; off in the paper)."""
    ig_steps: int = 16
    """Integrated-Gradients interpolation steps."""
    accelerator: str = "auto"

    MIN_BATCH = 4
    """Fewer images make every batch correlation meaningless (over 2 samples each one is ±1); below 16 the report
    says the correlations are noisy."""

    def validate(self) -> ExplainConfig:
        """Every option's range, named as the command line spells it.

        Raises:
            ConfigError: An option outside its range.

        """
        rules = [
            ("--samples", self.samples, self.samples >= self.MIN_BATCH, f">= {self.MIN_BATCH}"),
            ("--batch-size", self.batch_size, self.batch_size >= self.MIN_BATCH, f">= {self.MIN_BATCH}"),
            ("--alignment-batches", self.alignment_batches, self.alignment_batches >= 1, ">= 1"),
            ("--ig-steps", self.ig_steps, self.ig_steps >= 1, ">= 1"),
        ]
        for option, value, ok, rule in rules:
            if not ok:
                raise ConfigError(f"explain option {option}: must be {rule}, got {value}")
        return self


class _Slice(nn.Module):
    """Encoder + projector of one modality → mean over a slice of (batch-standardised) embedding dimensions."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, dims: slice, standardize: bool = True) -> None:
        super().__init__()
        self.encoder, self.projector, self.dims, self.standardize = encoder, projector, dims, standardize

    def forward(self, x: Tensor) -> Tensor:
        z = self.projector(self.encoder(x)).float()
        if self.standardize:  # BN(f(x)) of Algorithm 2: standardised over the batch, no affine parameters
            z = (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + 1e-5)
        return z[:, self.dims].mean(dim=1, keepdim=True)


@contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Eval mode inside; after, every submodule's own train / eval flag as it was (the caller's model unchanged)."""
    flags = [(sub, sub.training) for module in modules for sub in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for sub, flag in flags:
            sub.training = flag


@torch.no_grad()
def embeddings(module: Any, dataset: Dataset, samples: int, batch_size: int = 64) -> dict[str, Tensor]:
    """Projector outputs per modality for the first ``samples`` samples (un-augmented, eval mode)."""
    device = next(module.parameters()).device
    out: dict[str, list[Tensor]] = {}
    n = min(samples, len(dataset))  # type: ignore[arg-type]
    with evaluating(module):
        for batch in DataLoader(Subset(dataset, range(n)), batch_size=batch_size):
            for m in module.model.modalities:
                x = _first_view(batch[m]).to(device, non_blocking=True)
                out.setdefault(m, []).append(module.model.embed(m, module.views[m].normalize(x)).float().cpu())
    return {m: torch.cat(v) for m, v in out.items()}


def _first_view(x: Tensor) -> Tensor:
    """``N x C x H x W`` from a batch that may carry views (``N x V x C x H x W``: seasons or cropped views)."""
    return x[:, 0] if x.ndim == 5 else x


@torch.no_grad()
def alignment_per_batch(module: Any, dataset: Dataset, batches: int, batch_size: int) -> list[dict[str, np.ndarray]]:
    """Algorithm 2, step 1: per training-style batch and pair of modalities, ``(C_ii − 1)^2`` per dimension.

    A batch is ``batch_size`` consecutive samples made into views by the run's own training augmentation (first
    views, shared crop as in training); ``C = z_aᵀ z_b / N`` on the standardised embeddings: Eq. 1 exactly (the
    loss adds a variance epsilon of 1e-5, which matters only for near-constant dimensions).
    """
    device = next(module.parameters()).device
    n = min(len(dataset), batches * batch_size)  # type: ignore[arg-type]
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, drop_last=n >= 2 * batch_size)
    out = []
    with evaluating(module):
        for i, batch in enumerate(itertools.islice(loader, batches)):
            if len(next(iter(batch.values()))) < 2:
                continue
            torch.manual_seed(i)  # the augmentations draw from the global RNG: batch i gets the same views each time
            views = module.make_views({k: v.to(device) for k, v in batch.items()})
            z = {m: module.model.embed(m, xs[0]).double() for m, xs in views.items()}
            s = {m: (v - v.mean(0)) / v.std(0, unbiased=False).clamp_min(1e-12) for m, v in z.items()}  # Eq. 1
            pairs = itertools.combinations(s, 2)
            out.append({f"{a}-{b}": ((1 - (s[a] * s[b]).mean(0)) ** 2).cpu().numpy() for a, b in pairs})
    return out


def gradcam_maps(
    module: Any,
    x: dict[str, Tensor],
    dims: slice,
    layers: dict[str, nn.Module] | None = None,
    *,
    relu: bool = False,
    standardize: bool = True,
) -> dict[str, Tensor]:
    """GradCAM per modality for the mean of ``dims`` of ``BN(f(x))``, upsampled to the input, ``N x H x W``.

    The layer is the deepest encoder stage whose feature map is at least 7 pixels wide (``cam_layer``): the
    last stage at the paper's 224 px (7 x 7), an earlier one for small inputs, whose last maps are too coarse.
    ``layers`` (per modality) skips that search when the caller already made it. ``relu``: captum's ReLU on the
    attributions (off in the paper); ``standardize``: batch-standardised embedding (the paper).
    """
    from captum.attr import LayerAttribution, LayerGradCam

    maps = {}
    for m, inp in x.items():
        encoder = module.model.encoders[m]
        net = _Slice(encoder, module.model.projectors[m], dims, standardize)
        with evaluating(net):
            layer = layers[m] if layers is not None else cam_layer(encoder, inp)[1]
            if isinstance(encoder, VisionTransformer):
                cam = token_gradcam(net, encoder, layer, inp, relu)
            else:
                cam = LayerGradCam(net, layer).attribute(inp, target=0, relu_attributions=relu)
        maps[m] = LayerAttribution.interpolate(cam, tuple(inp.shape[-2:]), "bilinear")[:, 0].detach().cpu()
    return maps


def token_gradcam(net: nn.Module, vit: VisionTransformer, layer: nn.Module, x: Tensor, relu: bool) -> Tensor:
    """GradCAM of a ViT: the patch tokens that ``layer`` outputs, reshaped to their ``h x w`` grid, ``N x 1 x h x w``.

    GradCAM's recipe on that map: each of the D token channels is weighted by its gradient averaged over the grid,
    the weighted channels summed (``relu``: then clipped at 0). The layer is the first norm of the last block
    (``cam_layer``): with class-token pooling the last block's own patch outputs do not reach the pooled
    feature, so its input tokens are the last ones the output depends on spatially.
    """
    out: list[Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, tokens: out.append(tokens))
    try:
        score = net(x)[:, 0].sum()
    finally:
        hook.remove()
    tokens = out[0]
    (grad,) = torch.autograd.grad(score, tokens)
    side = vit.patch_embed.patch_size
    h, w = x.shape[-2] // side[0], x.shape[-1] // side[1]
    skip = vit.num_prefix_tokens
    a = tokens[:, skip:].reshape(len(x), h, w, -1)
    weights = grad[:, skip:].reshape(len(x), h, w, -1).mean(dim=(1, 2), keepdim=True)
    cam = (weights * a).sum(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    return cam.clamp(min=0) if relu else cam


def spectral_saliency(
    module: Any, x: dict[str, Tensor], dims: slice, *, standardize: bool = True, steps: int = 16
) -> dict[str, np.ndarray]:
    """Integrated Gradients per sample and band (Algorithm 2, step 5), ``N x C`` per modality.

    The signed attribution averaged over height and width, divided by the sum of its absolute band values. The
    baseline is zero in the standardised input space, i.e. every band at its dataset mean.
    """
    from captum.attr import IntegratedGradients

    out = {}
    for m, inp in x.items():
        net = _Slice(module.model.encoders[m], module.model.projectors[m], dims, standardize)
        with evaluating(net):
            attr = IntegratedGradients(net).attribute(
                inp, baselines=torch.zeros_like(inp), target=0, n_steps=steps, internal_batch_size=len(inp)
            )
        per_band = attr.float().mean(dim=(2, 3)).detach().cpu()
        out[m] = (per_band / per_band.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)).numpy()
    return out


def saliency_scores(cams: dict[str, Tensor]) -> Tensor:
    """Algorithm 2, step 4: one score per image pair from the modalities' GradCAM maps (``N x H x W`` each).

    Each map is normalised to [0, 1] per image; the product over the modalities, its log and a per-patch
    normalisation to [0, 1] give a map whose mean is the pair's score.
    """

    def unit(t: Tensor) -> Tensor:
        lo, hi = t.flatten(1).min(1).values[:, None, None], t.flatten(1).max(1).values[:, None, None]
        return (t - lo) / (hi - lo).clamp_min(1e-8)

    product = torch.ones_like(next(iter(cams.values())))
    for cam in cams.values():
        product = product * unit(cam.double())
    return unit(torch.log(product + 1e-6)).flatten(1).mean(1).float()


@torch.no_grad()
def cam_layer(encoder: nn.Module, x: Tensor, min_side: int = 7) -> tuple[str, nn.Module]:
    """``(name, module)`` of the deepest stage whose output is at least ``min_side`` pixels wide for input ``x``.

    Stages are the encoder's top-level children that output 4-D feature maps (``layer1`` ... ``layer4`` of a
    ResNet). Falls back to the first such stage when none is that wide. A plain ViT has one grid (its patches):
    the first norm of its last block (``token_gradcam``).
    """
    if isinstance(encoder, VisionTransformer):
        last = len(encoder.blocks) - 1
        return f"blocks.{last}.norm1", cast(nn.Module, encoder.blocks[last].norm1)
    sides: dict[str, int] = {}
    hooks = [
        child.register_forward_hook(lambda _m, _i, out, name=name: sides.__setitem__(name, out.shape[-1]))
        for name, child in encoder.named_children()
        if any(isinstance(c, nn.Conv2d) for c in child.modules())
    ]
    was_training = encoder.training
    encoder.eval()
    try:
        encoder(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
        encoder.train(was_training)
    wide = [name for name, side in sides.items() if side >= min_side]
    name = wide[-1] if wide else next(iter(sides))
    stage = getattr(encoder, name)
    return name, stage[-1] if isinstance(stage, nn.Sequential) and len(stage) else stage


def resolve_device(accelerator: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; ``cpu``, ``gpu``/``cuda`` or ``mps`` as named."""
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"accelerator {accelerator!r}: no CUDA device is visible; use auto or cpu")
        return torch.device("cuda")
    if accelerator in ("cpu", "mps"):
        return torch.device(accelerator)
    raise ValueError(f"accelerator {accelerator!r} is not one of auto, cpu, gpu, cuda, mps")


@dataclass
class Parts:
    """The common and unique slices of a run's embedding (``K_c`` and ``K``), and which of them exist."""

    kc: int
    k: int

    @property
    def common(self) -> slice:
        """The first ``K_c`` dims."""
        return slice(0, self.kc)

    @property
    def unique(self) -> slice:
        """The last ``K − K_c`` dims."""
        return slice(self.kc, self.k)

    def present(self) -> list[tuple[str, slice]]:
        """``(name, slice)`` of the non-empty parts, common first."""
        return [(n, sl) for n, sl in (("common", self.common), ("unique", self.unique)) if sl.stop > sl.start]


def alignment_summary(per_batch: list[dict[str, np.ndarray]], parts: Parts, batch: int) -> dict[str, Any]:
    """Algorithm 2, step 1, as numbers: per pair the per-batch ``(1 − C_ii)²``, dims above 1, common/unique means."""
    names = dict(parts.present())
    summary: dict[str, Any] = {"batch_size": batch, "batches": len(per_batch), "pairs": {}}
    for pair in per_batch[0] if per_batch else []:
        values = np.stack([b[pair] for b in per_batch])  # batches x K
        summary["pairs"][pair] = {
            "per_batch": values.tolist(),
            "above_one": [int((v > 1).sum()) for v in values],  # anti-correlated dims, outside range (0, 1)
            **{f"{n}_mean": float(values[:, names[n]].mean()) if n in names else None for n in ("common", "unique")},
        }
    for part in ("common", "unique"):
        vals = [p[f"{part}_mean"] for p in summary["pairs"].values() if p[f"{part}_mean"] is not None]
        summary[f"{part}_mean"] = float(np.mean(vals)) if vals else None
    return summary


def dimension_tsne(z: dict[str, Tensor]) -> np.ndarray:
    """Algorithm 2, step 2: a 2-D t-SNE in which each embedding dimension of each modality is one point."""
    from sklearn.manifold import TSNE

    points = torch.cat([(v - v.mean(0)) / (v.std(0) + 1e-6) for v in z.values()], dim=1).T.numpy()
    return TSNE(2, perplexity=min(30, max(5, len(points) // 10)), init="pca", random_state=0).fit_transform(points)


@dataclass
class Saliency:
    """Steps 3-5 over an evaluation set: pair scores and per-sample band attributions per part, the CAM layers."""

    scores: dict[str, np.ndarray]
    """Per part: one spatial saliency score per image pair (step 4)."""
    spectral: dict[str, dict[str, np.ndarray]]
    """Per part and modality: ``samples x bands`` signed Integrated-Gradients shares (step 5)."""
    layers: dict[str, str]
    """Per modality: the encoder stage GradCAM reads (step 3)."""
    shown: dict[str, dict[str, Tensor]]
    """The first image (``raw``) and its GradCAM maps per part, for the figure."""


def saliency_over_set(
    module: Any, dataset: Dataset, n_samples: int, parts: Parts, o: ExplainConfig, device: torch.device
) -> Saliency:
    """Algorithm 2, steps 3-5 on the first ``n_samples`` samples, in batches of ``o.batch_size``."""
    mods = module.model.modalities
    chosen = parts.present()
    scores: dict[str, list[Tensor]] = {n: [] for n, _ in chosen}
    spectral: dict[str, dict[str, list[np.ndarray]]] = {n: {m: [] for m in mods} for n, _ in chosen}
    layers: dict[str, tuple[str, nn.Module]] = {}
    shown: dict[str, dict[str, Tensor]] = {}
    for raw in DataLoader(Subset(dataset, range(n_samples)), batch_size=max(2, o.batch_size)):
        if len(next(iter(raw.values()))) < 2:  # the batch standardisation needs two images
            continue
        x_raw = {m: _first_view(raw[m]) for m in mods}
        x = {m: cast(ViewPipeline, module.views[m]).normalize(x_raw[m].to(device)) for m in mods}
        layers = layers or {m: cam_layer(module.model.encoders[m], x[m]) for m in mods}
        for n, sl in chosen:
            cams = gradcam_maps(
                module, x, sl, {m: lay for m, (_, lay) in layers.items()}, relu=o.cam_relu, standardize=o.standardize
            )
            scores[n].append(saliency_scores(cams))
            if n not in shown:
                shown[n], shown["raw"] = {m: c[0] for m, c in cams.items()}, {m: v[0] for m, v in x_raw.items()}
            for m, v in spectral_saliency(module, x, sl, standardize=o.standardize, steps=o.ig_steps).items():
                spectral[n][m].append(v)
    return Saliency(
        {n: torch.cat(v).numpy() for n, v in scores.items() if v},
        {n: {m: np.concatenate(v) for m, v in d.items() if v} for n, d in spectral.items()},
        {m: name for m, (name, _) in layers.items()},
        shown,
    )


def saliency_numbers(sal: Saliency, bands: dict[str, int]) -> dict[str, Any]:
    """Steps 3-5 as numbers (``explain.json``).

    The GradCAM layer per modality, the per-pair saliency scores with mean / std, and per part and modality the mean
    Integrated-Gradients share of every named band.
    """
    names = {m: band_names(m, c) for m, c in bands.items()}
    return {
        "gradcam_layer": sal.layers,
        "saliency_pairs": len(next(iter(sal.scores.values()))) if sal.scores else 0,
        "saliency_statistics": {
            n: {"scores": v.tolist(), "mean": float(v.mean()), "std": float(v.std())} for n, v in sal.scores.items()
        },
        "spectral_bands": names,
        "spectral_saliency": {
            n: {m: dict(zip(names[m], map(float, v.mean(0)), strict=True)) for m, v in d.items()}
            for n, d in sal.spectral.items()
        },
    }


# --------------------------------------------------------------------------------------------------------------
# The figures, drawn from the numbers above


def ground_truth_check(
    dataset: SyntheticMultimodal,
    z: dict[str, Tensor],
    common_dim: int,
    spectral: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """What the embeddings recover where the generator's truth is known (the built-in synthetic data).

    ``z`` holds the embeddings of ``dataset``'s first samples, in order.

    - ``alignment_ratio``: mean misalignment ``(1 − C_ii)^2`` of the unique dims over that of the common dims,
      over all samples, for the first two modalities (≫ 1 after DeCUR: common dims aligned, unique ones not);
    - ``factor_r2``: R² of ridge probes (first half of the samples to fit, second half to test) decoding each
      factor from each slice of each modality's embedding: shared factors should be decodable from the common
      dims, a modality's own factors from its unique dims;
    - with ``spectral`` (per part, modality and band: the mean signed IG share), ``optical_unique_band_share_*``:
      the share of the optical attribution on the bands where the optical-only factors act, weighted by how
      strongly they act there; the unique dims are expected to put more weight there than the common dims.
    """
    align = alignment(z)
    out: dict[str, Any] = {
        "alignment_ratio": float(align[common_dim:].mean() / max(float(align[:common_dim].mean()), 1e-12))
    }
    if spectral is not None and "optical" in z:
        weight = dataset.unique_factor_bands.numpy()
        for part in ("common", "unique"):
            if part in spectral and "optical" in spectral[part]:
                ig = np.abs(np.array(list(spectral[part]["optical"].values())))
                out[f"optical_unique_band_share_{part}"] = float((ig / max(ig.sum(), 1e-12) * weight).sum())
    n = len(next(iter(z.values())))
    factors = torch.stack([dataset[i]["factors"] for i in range(n)])
    half = n // 2
    r2: dict[str, dict[str, float]] = {}
    for m, emb in z.items():
        for part, sl in (("common", slice(0, common_dim)), ("unique", slice(common_dim, emb.shape[1]))):
            e = emb[:, sl]
            r2[f"{part}/{m}"] = grouped_r2(probe_r2(e[:half], factors[:half], e[half:], factors[half:]), dataset)
    out["factor_r2"] = r2
    return out
