"""LARS, the paper's parameter groups and the cosine schedule.

The paper (following Barlow Twins): LARS with momentum 0.9 and weight decay 1e-6; learning rate 0.2 for weights
and 0.0048 for biases and BatchNorm parameters, which are also excluded from weight decay and from the LARS trust
ratio; cosine decay without warm-up. Batch-size rule: the base rates are for a global batch of 256 and are scaled
linearly, ``lr = base_lr x global_batch / 256`` (Barlow Twins' rule); the schedule decays to 0.001 x lr.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from decur.config import OptimConfig


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) with SGD momentum.

    For parameters of a group with ``lars=True``: ``g ← g + wd·w``, then ``g ← g · η‖w‖/‖g‖`` (when both norms are
    non-zero), then the momentum update ``m ← μ m + g``, ``w ← w − lr·m``. Groups with ``lars=False`` (biases,
    norms) take the plain momentum update with their own ``weight_decay`` (0 in the paper's groups).

    Args:
        params: Parameter groups; each may set ``lr``, ``weight_decay`` and ``lars``.
        lr: Default learning rate.
        momentum: Momentum μ.
        weight_decay: Default weight decay.
        eta: Trust coefficient η.

    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        eta: float = 0.001,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"LARS needs non-negative lr, momentum, weight_decay; got {lr}, {momentum}, {weight_decay}"
            )
        super().__init__(
            params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "lars": True}
        )

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        """One update of every parameter with a gradient."""
        loss = torch.enable_grad()(closure)() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"].mul_(group["momentum"])
                if group["lars"]:
                    w_norm, g_norm = torch.norm(p), torch.norm(g)
                    one = torch.ones_like(w_norm)
                    trust = torch.where(w_norm > 0, torch.where(g_norm > 0, group["eta"] * w_norm / g_norm, one), one)
                    buf.addcmul_(g, trust)  # m ← μ m + trust·g without a scaled copy of g (memory-bound step)
                else:
                    buf.add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "dist_token")
"""ViT parameters kept out of weight decay whatever their shape."""


def decays(name: str, p: nn.Parameter) -> bool:
    """Whether weight decay applies: weights of 2+ dimensions, not a ViT's position embedding or tokens."""
    return p.ndim >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES


def parameter_groups(modules: Iterable[nn.Module], cfg: OptimConfig, batch_size: int) -> list[dict]:
    """Weights (LARS-adapted, decayed) vs biases and norm parameters (neither), with scaled learning rates.

    A parameter is a "bias or norm parameter" when it has fewer than 2 dimensions: biases, BatchNorm/LayerNorm
    weights and biases, and scalars such as CLIP's temperature. A ViT's position embedding and class / register
    tokens join them (no weight decay, as in the ViT self-supervised literature: DINO, MAE, iBOT).
    """
    seen: set[int] = set()
    weights: list[nn.Parameter] = []
    others: list[nn.Parameter] = []
    for module in modules:
        for name, p in module.named_parameters():
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (weights if decays(name, p) else others).append(p)
    scale = batch_size / 256 if cfg.scale_lr else 1.0
    if cfg.name == "adamw":
        lr = cfg.adamw_lr * scale
        return [
            {"params": weights, "lr": lr, "weight_decay": cfg.adamw_weight_decay},
            {"params": others, "lr": lr, "weight_decay": 0.0},
        ]
    return [
        {"params": weights, "lr": cfg.lr_weights * scale, "weight_decay": cfg.weight_decay, "lars": True},
        {"params": others, "lr": cfg.lr_biases * scale, "weight_decay": 0.0, "lars": False},
    ]


EMBEDDING_NAMES = ("patch_embed", *NO_DECAY_NAMES)
"""ViT parameters before the first block: layer 0 of ``layer_decay_scales``."""


def layer_decay_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Learning-rate multipliers of layer-wise decay (BEiT, MAE fine-tuning) for every ViT inside ``model``.

    A ViT of ``L`` blocks has layers 0 (patch embedding, position embedding, class token), ``i + 1`` (block ``i``)
    and ``L + 1`` (the final norm); a parameter of layer ``l`` trains at ``decay ** (L + 1 - l)`` times the rate.
    Parameters outside a ViT (heads, decoders, other encoders) are not listed (multiplier 1).

    Args:
        model: Any module holding timm ``VisionTransformer`` submodules (one per modality).
        decay: The per-layer factor in ``(0, 1]``; 1 = no decay.

    Returns:
        Parameter name (as ``model.named_parameters()``) → multiplier.

    """
    from timm.models.vision_transformer import VisionTransformer

    scales: dict[str, float] = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, VisionTransformer):
            continue
        depth = len(module.blocks)
        for name, _ in module.named_parameters():
            head = name.split(".")
            if head[0] in EMBEDDING_NAMES:
                layer = 0
            elif head[0] == "blocks":
                layer = int(head[1]) + 1
            else:
                layer = depth + 1
            scales[f"{prefix}.{name}" if prefix else name] = decay ** (depth + 1 - layer)
    return scales


def build_optimizer(modules: Iterable[nn.Module], cfg: OptimConfig, batch_size: int) -> torch.optim.Optimizer:
    """LARS (default, as the paper) or AdamW over ``parameter_groups``."""
    groups = parameter_groups(modules, cfg, batch_size)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=groups[0]["lr"])
    return LARS(groups, lr=groups[0]["lr"], momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, final: float = 0.001) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from 1 to ``final`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
