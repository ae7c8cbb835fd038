"""The pretraining LightningModule: batch → per-modality views → encoder/projector → objective → logs."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from decur.augment import ViewPipeline
from decur.config import PretrainConfig, from_dict
from decur.errors import NonFiniteGradientError, NonFiniteLossError, RunError
from decur.methods import Objective
from decur.models import MultimodalModel
from decur.optim import build_optimizer, lr_factor
from decur.runfiles import checkpoint_path, read_checkpoint
from decur.train import monitors
from decur.train.split import SplitSearch, permute_rows


def check_finite_gradients(module: nn.Module, step: int) -> None:
    """Raise ``NonFiniteGradientError`` naming the parameters whose gradient holds NaN or Inf.

    One fused norm per parameter and a single host synchronisation per step. A non-finite gradient stops the run
    instead of skipping the step: LARS would turn it into NaN momentum (trust ratio 0 x inf), and a skipped step
    would hide a broken setup (a bad sample, a too-high rate) that recurs; the last checkpoint stays intact.
    """
    named = [(name, p.grad) for name, p in module.named_parameters() if p.grad is not None]
    if not named:
        return
    norms = torch._foreach_norm([g for _, g in named])
    if bool(torch.isfinite(torch.stack(norms)).all()):
        return
    bad = [name for (name, _), n in zip(named, norms, strict=True) if not torch.isfinite(n)]
    raise NonFiniteGradientError(
        f"non-finite gradient at step {step} with a finite loss, in {len(bad)} parameter(s): {', '.join(bad[:5])}. "
        "Training stopped before the optimiser step; the last checkpoint is intact. Lower optim.lr_weights, use "
        "trainer.precision=32-true, or check the input data."
    )


BandStats = dict[str, tuple[list[float], list[float]]]


class PretrainModule(L.LightningModule):
    """Self-supervised pretraining of one encoder and one projector per modality.

    Args:
        config: The run configuration (a ``PretrainConfig`` or its dict form, as stored in checkpoints).
        stats: Per-modality ``(mean, std)`` lists used by the view pipelines where the config gives none.

    """

    def __init__(self, config: PretrainConfig | dict[str, Any], stats: BandStats) -> None:
        super().__init__()
        cfg = config if isinstance(config, PretrainConfig) else from_dict(PretrainConfig, config, "")
        self.cfg = cfg
        self.save_hyperparameters({"config": cfg.to_dict(), "stats": stats})
        self._last_step: int | None = None
        mods = cfg.data.modalities
        self.model = MultimodalModel(
            {m.name: m.bands for m in mods},
            cfg.model.arch,
            cfg.model.projector,
            cfg.model.share_projector,
            cfg.model.head_dim,
            cfg.model.vit_pool,
        )
        self.views = nn.ModuleDict(
            {
                m.name: ViewPipeline(
                    m.augment,
                    m.bands,
                    cfg.data.crop_size,
                    cfg.data.crop_scale,
                    m.mean if m.mean is not None else stats[m.name][0],
                    m.std if m.std is not None else stats[m.name][1],
                )
                for m in mods
            }
        )
        self.objective = Objective(cfg.method, [m.name for m in mods], cfg.common_dim)
        self.split: SplitSearch | None = None
        """``method.common_dim: auto``: the warm-up's statistics and the split found (``decur.train.split``)."""
        self._collapse_reported: set[str] = set()
        self.steps_run = 0
        """Training steps taken by this process (not restored from checkpoints: a resumed run counts only its own)."""
        if cfg.model.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_run(cls, run_or_ckpt: str | Path) -> PretrainModule:
        """The module of a run folder (its ``checkpoints/last.ckpt``) or of a checkpoint file, on the CPU."""
        path = checkpoint_path(run_or_ckpt)
        state = read_checkpoint(path, "loading the model")  # a clear error for a truncated or foreign file
        if set(state.get("hyper_parameters") or {}) != {"config", "stats"}:
            raise RunError(
                f"{path}: a checkpoint of another kind of run (a transfer seed?), not of a pretraining run. Fix: "
                "point at the folder `decur pretrain` wrote (the transfer's `pretrained` run)"
            )
        return cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)

    def on_fit_start(self) -> None:
        """``common_dim: auto``: the warm-up's length from the run's steps (a checkpoint's own wins on resume)."""
        if self.cfg.method.common_dim == "auto" and self.split is None:
            total = int(self.trainer.estimated_stepping_batches)
            warmup = round(self.cfg.method.auto_warmup * total)
            self.split = SplitSearch(self.cfg.embed_dim, self.objective.modalities, warmup)

    def setup(self, stage: str) -> None:
        """Under multi-GPU DDP, BatchNorm statistics are synchronised over the global batch (trainer.sync_batchnorm).

        (PyTorch has no CPU SyncBatchNorm: CPU processes keep per-process statistics.)

        With ``trainer.compile`` every encoder and projector is compiled in place (``nn.Module.compile``: the
        state-dict keys stay those of the plain modules, so checkpoints and exports do not change).
        """
        which = self.cfg.trainer.sync_batchnorm
        if self.trainer.world_size > 1 and self.trainer.strategy.root_device.type == "cuda" and which != "none":
            if which == "all":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            else:
                self.model.projectors = nn.SyncBatchNorm.convert_sync_batchnorm(self.model.projectors)
        if self.cfg.trainer.compile:
            self.compile_networks()

    def compile_networks(self) -> None:
        """``torch.compile`` each encoder and projector (graphs are built on the first batch)."""
        for module in [*self.model.encoders.values(), *self.model.projectors.values()]:
            module.compile()

    def make_views(self, batch: dict[str, Tensor]) -> dict[str, list[Tensor]]:
        """Augmented views per modality; with ``share_crop`` the modalities' first views share geometry."""
        names = self.objective.modalities
        n = batch[names[0]].shape[0]
        cropped = "views_cropped" in batch  # crops taken per sample in the loader (mixed image sizes)
        shared = None
        if self.cfg.data.share_crop and len(names) > 1 and not cropped:
            first = cast(ViewPipeline, self.views[names[0]])
            shared = first.sample_geometry(n)
        views: dict[str, list[Tensor]] = {}
        for m in names:
            views[m] = []
            for v in range(self.objective.views):
                source = batch[m][:, v] if batch[m].ndim == 5 else batch[m]  # N x V x C x H x W: one season per view
                x = self.views[m](source, view=v, geometry=shared if v == 0 else None, cropped=cropped)
                if self.cfg.model.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                views[m].append(x)
        return views

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One step of the configured objective; raises ``NonFiniteLossError`` on NaN/Inf."""
        with torch.autocast(self.device.type, enabled=False):  # views in full precision, encoders under autocast
            views = self.make_views(batch)
        z = {m: [self.model.embed(m, x) for x in xs] for m, xs in views.items()}
        terms = self.objective(z)
        if self.split is not None:
            self.split.observe(z, self.global_step)
        if not torch.isfinite(terms["total"]):
            values = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
            raise NonFiniteLossError(
                f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}): {values}. "
                "Training stopped; the last checkpoint is intact. Lower optim.lr_weights, use "
                "trainer.precision=32-true, or check the input data for NaN/Inf."
            )
        self.steps_run += 1
        self.log("loss", terms["total"], prog_bar=True, logger=False)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, logger=False)
        self.log_monitors(z)
        return terms["total"]

    def log_monitors(self, z: dict[str, list[Tensor]]) -> None:
        """Collapse monitors (``decur.train.monitors``) of the first views, on the progress bar and in metrics.csv.

        ``emb_std_<m>`` every logged step, ``rank_<m>`` every ``trainer.rank_every`` steps, ``align_common`` /
        ``align_unique`` (the mean over pairs of modalities). A collapse is reported once per modality as a warning.
        """
        step = self.global_step + 1  # the step this batch completes
        rank_every = self.cfg.trainer.rank_every
        if self._last_step is None and self._trainer is not None:
            self._last_step = int(self.trainer.estimated_stepping_batches)  # the run's final step, counted once
        last = step == self._last_step
        if rank_every and (step % rank_every == 0 or step == 1 or last):
            for m, views in z.items():
                self.log(f"rank_{m}", monitors.effective_rank(views[0]), prog_bar=True, logger=False)
        if step % self.cfg.trainer.log_every_n_steps and step != 1:
            return
        for m, views in z.items():
            std = monitors.embedding_std(views[0])
            self.log(f"emb_std_{m}", std, prog_bar=True, logger=False)
            if monitors.collapsed(float(std), views[0].shape[1]) and m not in self._collapse_reported:
                self._collapse_reported.add(m)
                rank_zero_warn(
                    f"the {m} embedding has collapsed at step {step}: emb_std_{m} = {float(std):.2e}, far below "
                    f"1/sqrt(K) = {1 / math.sqrt(views[0].shape[1]):.2e} (every input maps to one direction). "
                    "Lower the learning rate, check the augmentations, or compare with method.name=barlow_twins_cross."
                )
        names = list(z)
        if len(names) >= 2:  # the mean over pairs of modalities
            pairs = list(itertools.combinations(names, 2))
            values = [monitors.cross_alignment(z[a][0], z[b][0], self.objective.common_dim) for a, b in pairs]
            common = torch.stack([v[0] for v in values]).mean()
            unique = torch.stack([v[1] for v in values]).mean()
            if self.objective.common_dim > 0:
                self.log("align_common", common, prog_bar=True, logger=False)
            if self.objective.common_dim < z[names[0]][0].shape[1]:
                self.log("align_unique", unique, prog_bar=True, logger=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """``common_dim: auto``: log the running estimate; at the warm-up's end decide, reorder and go on with it."""
        if self.split is None:
            return
        steps = self.global_step  # optimiser steps done, this batch's included
        if self.split.due(steps):
            k_c, order = self.trainer.strategy.broadcast(self.split.decide(steps), src=0)
            self.split.found, self.split.order = k_c, order
            permute_rows(list(self.model.projectors.values()), order, list(self.trainer.optimizers))
            self.use_common_dim(k_c)
            if self.trainer.is_global_zero:
                print(
                    f"common_dim=auto: {k_c} of {self.cfg.embed_dim} dimensions common ({k_c / self.cfg.embed_dim:.1%})"
                    f" after {steps} warm-up steps; dimensions reordered, common first"
                )
        if steps % self.cfg.trainer.log_every_n_steps and self.split.found_at != steps:
            return
        estimate = self.split.found if self.split.found is not None else (self.split.estimate() or (None, None))[0]
        if estimate is not None:
            self.log("split_common_share", estimate / self.cfg.embed_dim, logger=False)

    def use_common_dim(self, k_c: int) -> None:
        """Train on with ``k_c`` common dimensions, and record them where checkpoints and exports read them."""
        self.objective.common_dim = k_c
        self.cfg.method.common_dim = k_c
        self.hparams["config"]["method"]["common_dim"] = k_c

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Stop on NaN/Inf gradients (``check_finite_gradients``); 16-bit loss scaling handles its own."""
        if self.cfg.trainer.precision != "16-mixed":
            check_finite_gradients(self, self.global_step)

    def configure_optimizers(self) -> Any:
        """LARS (or AdamW) with per-step cosine decay and optional linear warm-up."""
        opt = build_optimizer([self.model, self.objective], self.cfg.optim, self.cfg.data.batch_size)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(self.cfg.optim.warmup_epochs * total / self.cfg.trainer.max_epochs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        """Reseed every RNG from (seed, epoch, rank).

        Each process draws its own views, and any epoch replays the same way whether the run was interrupted
        before it or not.
        """
        seed = (self.cfg.trainer.seed + 1_000_003 * (self.current_epoch + 1) + 7_919 * self.global_rank) % 2**32
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        torch.manual_seed(seed)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store every RNG so a resumed run draws the same views and batches as an uninterrupted one."""
        _, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
        checkpoint["rng_states"] = {  # plain types and tensors only: loadable with weights_only=True
            "python": random.getstate(),
            "numpy": [
                torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                int(pos),
                int(has_gauss),
                float(gauss),
            ],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.split is not None:
            checkpoint["common_dim_auto"] = self.split.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the RNG states written by ``on_save_checkpoint``, and the ``common_dim: auto`` search."""
        split = checkpoint.get("common_dim_auto")
        if split is not None and self.cfg.method.common_dim == "auto":  # resuming: the weights are reordered
            self.split = SplitSearch(self.cfg.embed_dim, self.objective.modalities, int(split["warmup_steps"]))
            self.split.load_state_dict(split)
            if self.split.found is not None:
                self.use_common_dim(int(self.split.found))
        states = checkpoint.get("rng_states")
        if states is None:
            return
        random.setstate(states["python"])
        keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
