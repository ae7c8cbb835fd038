"""The mutation check: plausible one-line bugs put back into decur, one at a time; the fast tests must catch each.

    python -m tests.mutants            # every mutant (make mutants)
    python -m tests.mutants pairing    # the mutants whose name contains "pairing"

Each :class:`Mutant` replaces one exact piece of source (it must occur exactly once, so a refactoring that moves
it makes the check fail loudly instead of silently testing nothing) in a copy of ``src/``, then runs the tests
that make the claim, with that copy first on ``PYTHONPATH``. A mutant the tests do not catch "survives"; the check
prints a table and exits 1 when any survives or no longer applies.

Adding one: write the bug as ``Mutant(name, file, old, new, tests)`` below, next to its area; ``tests`` are pytest
node ids or ``file::-k expression`` selections, as few and as fast as still catch it. Run
``python -m tests.mutants NAME`` to see it caught.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """One plausible bug: ``old`` → ``new`` in ``src/decur/<file>``, caught by ``tests``."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


def _t(path: str, k: str | None = None) -> str:
    return f"{path}::-k {k}" if k else path


MUTANTS = [
    # ---- losses (Eq. 1-6) -----------------------------------------------------------------------------------
    Mutant("loss: diagonal of C divided by N - 1", "losses.py",
           "diag = (a[:, :k] * b[:, :k]).sum(dim=0) / n", "diag = (a[:, :k] * b[:, :k]).sum(dim=0) / (n - 1)",
           (_t("tests/test_losses.py", "reference"),)),
    Mutant("loss: off-diagonal term keeps the diagonal", "losses.py",
           "lambda_offdiag * (sum_sq - diag.pow(2).sum())", "lambda_offdiag * sum_sq",
           (_t("tests/test_losses.py", "reference"),)),
    Mutant("loss: unique block pulled to the identity", "losses.py",
           "correlation_objective(views[a][:, kc:], views[b][:, kc:], 0.0, lambda_unique)",
           "correlation_objective(views[a][:, kc:], views[b][:, kc:], 1.0, lambda_unique)",
           (_t("tests/test_losses.py", "reference"),)),
    Mutant("loss: intra term of a modality between modalities", "losses.py",
           "correlation_objective(s1[i], s2[i], 1.0, lambdas[i])",
           "correlation_objective(s1[i], s2[(i + 1) % m], 1.0, lambdas[i])",
           (_t("tests/test_losses.py", "reference"),)),
    Mutant("loss (M modal): both view pairs summed, not averaged", "losses.py",
           "c_ab, u_ab = c_ab / len(view_sets), u_ab / len(view_sets)", "pass",
           (_t("tests/test_multimodal.py", "reduce_exactly"),)),
    Mutant("loss (M modal): pairs=mean ignored", "losses.py",
           "common, unique = common / len(pair_list), unique / len(pair_list)", "pass",
           (_t("tests/test_multimodal.py", "every_pair"),)),
    # ---- data: SSL4EO-S12 v1.0 pairing, v1.1 offset --------------------------------------------------------
    Mutant("pairing: seasons by sorted name", "data/ssl4eo_s12.py",
           "a = sorted((acquisition_date(f), f) for f in first)",
           "a = [(acquisition_date(f), f) for f in sorted(first)]",
           (_t("tests/test_ssl4eo_s12.py", "pair"),)),
    Mutant("pairing: packed stores of the old rule accepted", "data/pack.py",
           'if index.get("format") == "decur-ssl4eo-s12-pack/1":', 'if index.get("format") == "never":',
           (_t("tests/test_ssl4eo_s12.py", "repacked"),)),
    Mutant("v1.1: S2 offset kept", "data/ssl4eo_v11.py",
           "np.clip(dn.astype(np.int64) - S2_OFFSET, 0, 10000)", "np.clip(dn.astype(np.int64), 0, 10000)",
           (_t("tests/test_ssl4eo_v11.py", "preprocessing or lookup"),)),
    Mutant("v1.1: statistics keep the offset", "data/ssl4eo_v11.py",
           "([(v - _OFFSET[m]) * _SCALE[m] for v in mean]", "([v * _SCALE[m] for v in mean]",
           (_t("tests/test_ssl4eo_v11.py", "statistics"),)),
    Mutant("v1.1: data check decodes one timestamp", "data/check.py",
           "times = [0] if quick else list(range(int(ds.sizes[\"time\"])))", "times = [0]",
           (_t("tests/test_bad_input.py", "v11_check"),)),
    Mutant("pairing: unequal counts keep the first seasons", "data/ssl4eo_s12.py",
           "best = [f for _, f in min(itertools.combinations(long, len(short)), key=gap)]",
           "best = [f for _, f in long[: len(short)]]",
           (_t("tests/test_ssl4eo_s12.py", "unequal"),)),
    Mutant("pairing: an undated folder name passes", "data/ssl4eo_s12.py",
           "            raise ValueError(folder.name)", "            return datetime(2020, 1, 1)",
           (_t("tests/test_ssl4eo_s12.py", "without_a_date"),)),
    # ---- data: modalities, caches, depth ----------------------------------------------------------------------
    Mutant("transfer: every modality read", "evaluate/transfer/data.py",
           "used = list(run.modalities or bands)", "used = list(bands)",
           (_t("tests/test_rgbd_fixtures.py", "shipped and rgb and not hha and sunrgbd"),)),
    Mutant("rgbd: modalities argument ignored", "data/rgbd.py",
           "self.folders = {k: v for k, v in known.items() if k in wanted}", "self.folders = dict(known)",
           (_t("tests/test_rgbd_fixtures.py", "only_the_modalities"),)),
    Mutant("hha: writes into its source folder", "data/rgbd.py",
           "if dst.resolve() == src.resolve() or clash:", "if False:",
           (_t("tests/test_bad_input.py", "overwrites or never_writes"),)),
    Mutant("hha: no warning on far depth", "data/rgbd.py",
           "elif (valid > self.max_depth_m).mean() > 0.5:", "elif False:",
           (_t("tests/test_bad_input.py", "implausible"),)),
    Mutant("hha: no warning on all-zero depth", "data/rgbd.py",
           "self.found[notes[0]].append(path.name)", "pass",
           (_t("tests/test_bad_input.py", "implausible"),)),
    Mutant("geonrw: city subsets from the config ignored", "evaluate/transfer/data.py",
           "tr_c, te_c = (tuple(c) if c is not None else None for c in (run.train_cities, run.test_cities))",
           "tr_c, te_c = None, None",
           (_t("tests/test_bad_input.py", "geonrw_city"),)),
    Mutant("bigearthnet: a v2 tree read as v1", "evaluate/transfer/data.py",
           "if is_bigearthnet_v2(root):", "if False:",
           (_t("tests/test_bad_input.py", "raw_bigearthnet_v2"),)),
    Mutant("bigearthnet: stale pairing cache trusted", "data/bigearthnet.py",
           'saved.get("folder") == state', "True",
           (_t("tests/test_bad_input.py", "stale"),)),
    Mutant("config: cloud filter without a mask accepted", "config.py",
           "mcf is None or bool(masked),", "True,",
           (_t("tests/test_bad_input.py", "cloud_filter"),)),
    # ---- v1.1 reader: pairing across sensors, sharding, clouds, no-data ---------------------------------------
    Mutant("v1.1: S1 views from other timestamps", "data/ssl4eo_v11.py",
           "m: torch.stack([_preprocess(m, arrays[m][t][i]) for t in chosen[i].tolist()]) for m in self.modalities",
           "m: torch.stack([_preprocess(m, arrays[m][t][i]) for t in (chosen[i].flip(0) if m == 's1grd' else "
           "chosen[i]).tolist()]) for m in self.modalities",
           (_t("tests/test_ssl4eo_v11.py", "same_timestamps"),)),
    Mutant("v1.1: uneven split rounds up (files read twice)", "data/ssl4eo_v11.py",
           "        per = self.files_per_process", "        per = -(-len(self.files) // self.world_size)",
           (_t("tests/test_ssl4eo_v11.py", "uneven"),)),
    Mutant("v1.1: no least-cloudy fallback", "data/ssl4eo_v11.py",
           'return torch.tensor(np.argsort(cloud, kind="stable")[: self.views].tolist())', "return order[: self.views]",
           (_t("tests/test_ssl4eo_v11.py", "least_cloudy"),)),
    Mutant("v1.1: draws seeded by the worker", "data/ssl4eo_v11.py",
           "* 7_919 + self._file_number[name])", "* 7_919 + worker)",
           (_t("tests/test_ssl4eo_v11.py", "which_worker"),)),
    Mutant("v1.1: S1 no-data filled with 0 dB", "data/ssl4eo_v11.py",
           "nan=float(s1.nanmean())", "nan=0.0",
           (_t("tests/test_ssl4eo_v11.py", "no_data"),)),
    # ---- CMX, retrieval, monitors ----------------------------------------------------------------------------
    Mutant("cmx: fusion drops its residual", "models/cmx.py",
           "norm(t + proj(torch.cat([r, x], dim=-1)))", "norm(proj(torch.cat([r, x], dim=-1)))",
           (_t("tests/test_mit_cmx.py", "fusion_module"),)),
    Mutant("cmx: fusion concatenates in the other order", "models/cmx.py",
           "norm(t + proj(torch.cat([r, x], dim=-1)))", "norm(t + proj(torch.cat([x, r], dim=-1)))",
           (_t("tests/test_mit_cmx.py", "fusion_module"),)),
    Mutant("retrieval: common slice scores the unique dims", "evaluate/retrieval.py",
           'spaces = {"common": (embeddings[a][:, :common_dim], embeddings[b][:, :common_dim]), **spaces}',
           'spaces = {"common": (embeddings[a][:, common_dim:], embeddings[b][:, common_dim:]), **spaces}',
           (_t("tests/test_multimodal.py", "common_slice"),)),
    Mutant("retrieval: ties counted for the query", "evaluate/retrieval.py",
           "return (sim >= sim.diagonal()[:, None]).sum(dim=1)",
           "return (sim > sim.diagonal()[:, None]).sum(dim=1) + 1",
           (_t("tests/test_multimodal.py", "hand_built_sets"),)),
    Mutant("retrieval: chance level N / 2", "evaluate/retrieval.py",
           'out["random_median_rank"] = (n + 1) / 2', 'out["random_median_rank"] = n / 2',
           (_t("tests/test_transfer.py", "retrieval_cli"),)),
    Mutant("monitor: collapse threshold 1000x lower", "train/monitors.py",
           "return std < factor / math.sqrt(dim)", "return std < factor / 1000 / math.sqrt(dim)",
           (_t("tests/test_monitors.py", "threshold"),)),
    # ---- resume (pretraining and fine-tuning) ----------------------------------------------------------------
    Mutant("resume: fine-tuning ignores last.ckpt", "evaluate/transfer/seed.py",
           "trainer.fit(module, loader, ckpt_path=last if resumed is not None else None)",
           "trainer.fit(module, loader, ckpt_path=None)",
           (_t("tests/test_transfer.py", "killed"),)),
    Mutant("resume: metrics.csv keeps rows past the checkpoint", "train/callbacks.py",
           'rows = [r for r in csv.DictReader(f) if int(r["step"]) <= trainer.global_step]',
           "rows = list(csv.DictReader(f))",
           (_t("tests/test_transfer.py", "killed"),)),
    Mutant("resume: the first resumed epoch replays epoch 0's order", "data/sampling.py",
           "    sampler.set_epoch(start_epoch)\n", "",
           (_t("tests/test_train.py", "resume_after_kill"),)),
    Mutant("resume: pretraining ignores last.ckpt", "train/run.py",
           "trainer.fit(module, loader, ckpt_path=last if resumed is not None else None)",
           "trainer.fit(module, loader, ckpt_path=None)",
           (_t("tests/test_train.py", "resume_after_kill"),)),
    # ---- explain (Algorithm 2) and the convergence study -----------------------------------------------------
    Mutant("explain: IG loses its sign", "explain/compute.py",
           "per_band = attr.float().mean(dim=(2, 3)).detach().cpu()",
           "per_band = attr.float().abs().mean(dim=(2, 3)).detach().cpu()",
           (_t("tests/test_explain.py", "sign"),)),
    Mutant("explain: saliency score without the log", "explain/compute.py",
           "return unit(torch.log(product + 1e-6)).flatten(1).mean(1).float()",
           "return unit(product).flatten(1).mean(1).float()",
           (_t("tests/test_explain.py", "log_product"),)),
    Mutant("explain: GradCAM of every dim for each part", "explain/compute.py",
           "module, x, sl, {m: lay for m, (_, lay)",
           "module, x, slice(None), {m: lay for m, (_, lay)",
           (_t("tests/test_explain.py", "explains_the_dims"),)),
    Mutant("convergence: slices swapped in the trajectory R²", "evaluate/convergence.py",
           'slices = {"common": slice(0, common_dim), "unique": slice(common_dim, k)}\n    factor_names',
           'slices = {"unique": slice(0, common_dim), "common": slice(common_dim, k)}\n    factor_names',
           (_t("tests/test_convergence.py", "slice_r2"),)),
    Mutant("convergence: R² slices compared at their own widths", "evaluate/convergence.py",
           "width = min(common_dim, k - common_dim)", "width = max(common_dim, k - common_dim)",
           (_t("tests/test_convergence.py", "matched"),)),
    # ---- transfer validation ---------------------------------------------------------------------------------
    Mutant("transfer: counts below 1 accepted", "evaluate/transfer/config.py",
           "if value is not None and value < 1:", "if value is not None and value < 0:",
           (_t("tests/test_transfer.py", "every_transfer_field"),)),
    Mutant("transfer: precision not checked", "evaluate/transfer/config.py",
           '_allowed("trainer.precision", self.trainer.precision, PRECISIONS)', "pass",
           (_t("tests/test_transfer.py", "every_transfer_field"),)),
    # ---- metrics ---------------------------------------------------------------------------------------------
    Mutant("metrics: macro mAP counts classes without positives", "evaluate/metrics.py",
           "present = positives > 0", "present = positives >= 0",
           (_t("tests/test_transfer.py", "macro"),)),
    Mutant("metrics: mIoU counts absent classes", "evaluate/metrics.py",
           "present = [k for k in classes if union[k] > 0]", "present = classes",
           (_t("tests/test_transfer.py", "segmentation or iou"),)),
    # ---- run folder: lock, config, checkpoints, resume --------------------------------------------------------
    Mutant("run: no lock", "train/engine.py",
           "fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
           (_t("tests/test_bad_input.py", "second_process or held_elsewhere or dies_with_it"),)),
    Mutant("cli: overrides after --output dropped", "cli.py",
           "    if rest:\n", "    if False:\n",
           (_t("tests/test_config.py", "follow_the_options"),)),
    Mutant("run lock: an flock, inherited by forked loader workers", "train/engine.py",
           "fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)", "fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)",
           (_t("tests/test_bad_input.py", "dies_with_it"),)),
    Mutant("run: a failed start binds its folder", "train/engine.py",
           'if not saved.exists() or not (saved.parent / "checkpoints" / "last.ckpt").exists():',
           "if not saved.exists():",
           (_t("tests/test_bad_input.py", "failed_start"),)),
    Mutant("run: tmp checkpoint left on a full disk", "train/callbacks.py",
           "tmp.unlink(missing_ok=True)", "pass",
           (_t("tests/test_bad_input.py", "full_disk"),)),
    Mutant("run: foreign checkpoints accepted", "train/engine.py",
           'if not isinstance(state, dict) or "state_dict" not in state or "pytorch-lightning_version" not in state:',
           "if not isinstance(state, dict):",
           (_t("tests/test_bad_input.py", "damaged"),)),
    Mutant("run: data.root is part of the identity", "train/run.py",
           '"data.root",  # the data', '# "data.root",  # the data',
           (_t("tests/test_bad_input.py", "data_may_move"),)),
    Mutant("cli: every command imports the training stack", "cli.py",
           "from decur.errors import DecurError, NonFiniteGradientError, NonFiniteLossError  # light",
           "from decur.errors import DecurError\n"
           "    from decur.train.module import NonFiniteGradientError, NonFiniteLossError  # light",
           (_t("tests/test_config.py", "training_stack"),)),
    # ---- configs ---------------------------------------------------------------------------------------------
    Mutant("validate: stops at the first failing file", "cli.py",
           "            failed += 1\n", "            return 2\n",
           (_t("tests/test_bad_input.py", "validate_names"),)),
    Mutant("config: any timm name accepted as model.arch", "config.py",
           "\"model.arch\": lambda: check_arch(model.arch),", "\"model.arch\": lambda: None,",
           (_t("tests/test_bad_input.py", "cannot_honour"),)),
    Mutant("config: YAML syntax errors as tracebacks", "config.py",
           "    except yaml.YAMLError as err:", "    except KeyError as err:",
           (_t("tests/test_bad_input.py", "yaml_syntax"),)),
    Mutant("cli: --debug ignored", "cli.py",
           "if args.debug or os.environ", "if os.environ",
           (_t("tests/test_bad_input.py", "debug"),)),
    Mutant("experiment: empty seed list accepted", "evaluate/experiment.py",
           '_need(bool(self.seeds), kind, "seeds"', '_need(True, kind, "seeds"',
           (_t("tests/test_bad_input.py", "empty_seed and experiment"),)),
    Mutant("transfer: empty seed list accepted", "evaluate/transfer/config.py",
           "if self.seeds is not None and not self.seeds:", "if False:",
           (_t("tests/test_bad_input.py", "empty_seed and transfer"),)),
    Mutant("transfer: pretrained checked after the data", "evaluate/transfer/config.py",
           "            check_pretrained(self.pretrained, self.pretrained_modalities",
           "            print(self.pretrained, self.pretrained_modalities",
           (_t("tests/test_bad_input.py", "pretrained_is_validated"),)),
    Mutant("transforms: release 8-bit rounds instead of truncating", "data/transforms.py",
           "scaled.clamp(0, 255).floor()", "scaled.clamp(0, 255).round()",
           (_t("tests/test_weights.py", "release_rule"),)),
    Mutant("transforms: release S1 quantile clip at 2 %", "data/transforms.py",
           'steps = [{"op": "cut_outliers", "fraction": 0.01}]', 'steps = [{"op": "cut_outliers", "fraction": 0.02}]',
           (_t("tests/test_weights.py", "release_rule"),)),
    Mutant("weights: joint backbones named in reverse", "weights/formats.py",
           "dict(zip(names, (encoders[1], encoders[2]), strict=True))",
           "dict(zip(names, (encoders[2], encoders[1]), strict=True))",
           (_t("tests/test_weights.py", "release_joint"),)),
    Mutant("joint encoder: missing B10 not zero-filled", "models/joint.py",
           'ZERO_FILLED = ("B10",)', "ZERO_FILLED: tuple[str, ...] = ()",
           (_t("tests/test_weights.py", "joint_encoder"),)),
    Mutant("transfer: samples pass untransformed", "evaluate/start.py",
           "self.transforms[k](v) if k in self.transforms else v", "v",
           (_t("tests/test_weights.py", "transfer_start"),)),
    Mutant("optim: ViT position embedding decayed", "optim.py",
           'NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "dist_token")', 'NO_DECAY_NAMES = ("reg_token",)',
           (_t("tests/test_vit.py", "weight_decay"),)),
    Mutant("transforms: decur S1 outlier cut at 1 %", "data/transforms.py",
           'first = {"op": "cut_outliers", "fraction": 0.02}', 'first = {"op": "cut_outliers", "fraction": 0.01}',
           (_t("tests/test_weights.py", "decur_rule"),)),
    Mutant("weights: release MiT projector not shifted behind its head", "weights/formats.py",
           "**_shift(proj, 1)}", "**proj}",
           (_t("tests/test_weights.py", "release_mit"),)),
    Mutant("weights: ResNet block type ignored", "weights/formats.py",
           'RESNET_DEPTHS.get(("layer1.0.conv3.weight" in state, depths))', "RESNET_DEPTHS.get((True, depths))",
           (_t("tests/test_weights.py", "arch_and_bands"),)),
    Mutant("weights: MiT-B0 read as B1", "weights/formats.py",
           '("mit_b0" if width == 32 else "mit_b1")', '("mit_b0" if width == 64 else "mit_b1")',
           (_t("tests/test_weights.py", "mit_size"),)),
    Mutant("weights: classifier keys kept", "weights/formats.py",
           'if not k.startswith(("fc.", "head."))}', "if True}",
           (_t("tests/test_weights.py", "backbone_only"),)),
    Mutant("weights: RDA checkpoint accepted", "weights/formats.py",
           'if any(k.startswith(("da1_l", "da2_l")) for k in state):', "if False:",
           (_t("tests/test_weights.py", "cannot_use"),)),
    Mutant("weights: a rewritten file served from the cache", "weights/formats.py",
           "return _load_file(str(path), stat.st_mtime_ns, stat.st_size)",
           "return _load_file(str(path), 0, stat.st_size)",
           (_t("tests/test_weights.py", "rewritten"),)),
    Mutant("weights: input_transform ignored when a transform is recorded", "weights/inputs.py",
           "if recorded is not None and rule in (None, recorded.rule):", "if recorded is not None:",
           (_t("tests/test_weights.py", "import_writes"),)),
    Mutant("weights: Sentinel weights default to decur's rule", "weights/inputs.py",
           'chosen = rule or ("ssl4eo_release" if bands in SENTINEL_BANDS else None)', 'chosen = rule or "decur"',
           (_t("tests/test_weights.py", "release_checkpoint_with_its_transform"),)),
    Mutant("transfer: release rule accepted on decur's preprocessed values", "weights/inputs.py",
           'if transform.units in ("DN", "dB") and transform.rule != "decur":', "if False:",
           (_t("tests/test_weights.py", "packed_store"),)),
    Mutant("bigearthnet: raw reader still cuts S1 outliers", "data/bigearthnet.py",
           "return bands if raw else cut_outliers(bands)", "return cut_outliers(bands)",
           (_t("tests/test_weights.py", "transfer_start"),)),
    Mutant("vit: crop the patch does not divide accepted", "config.py",
           "patch is None or crop_size % patch == 0", "True",
           (_t("tests/test_vit.py", "patch_divides or refused"),)),
    Mutant("vit: FCN maps from the first three blocks", "models/heads.py",
           "return pyramid(self.vit, x)[1:]", "return pyramid(self.vit, x)[:3]",
           (_t("tests/test_vit.py", "fcn_on_vit"),)),
    Mutant("joint encoder: common dims of the first modality only", "models/joint.py",
           "return torch.stack(common).mean(dim=0)", "return common[0]",
           (_t("tests/test_weights.py", "joint_encoder"),)),
    Mutant("terratorch: TerraTorch's band names not mapped", "weights/terratorch.py",
           "for candidate in (name, TERRATORCH_S2.get(upper), TERRATORCH_RGB.get(upper)):",
           "for candidate in (name,):",
           (_t("tests/test_terratorch.py", "band_spellings"),)),
    Mutant("terratorch: an unknown band name skipped", "weights/terratorch.py",
           "        else:\n            raise WeightsError(\n",
           "        else:\n            continue\n            raise WeightsError(\n",
           (_t("tests/test_terratorch.py", "band_spellings"),)),
    Mutant("terratorch: out_indices ignored", "weights/terratorch.py",
           "joint.levels = picked", "joint.levels = list(range(len(widths)))",
           (_t("tests/test_terratorch.py", "dict_input"),)),
    Mutant("terratorch: dict input taken in the card's band order", "weights/terratorch.py",
           "inputs[m] = take_bands(value, self.orders[m]) if m in self.orders else value", "inputs[m] = value",
           (_t("tests/test_terratorch.py", "dict_input"),)),
    Mutant("terratorch: input_transform none still transforms", "weights/terratorch.py",
           'transforms=input_transform == "card")', "transforms=True)",
           (_t("tests/test_terratorch.py", "random_start"),)),
    Mutant("terratorch: pretrained=False keeps the weights", "weights/terratorch.py",
           "    if not pretrained:\n", "    if False:\n",
           (_t("tests/test_terratorch.py", "random_start"),)),
    Mutant("joint encoder: ViT maps not resampled to the pyramid strides", "models/heads.py",
           "zip(maps, PYRAMID_STRIDES, strict=True)", "zip(maps, (16, 16, 16, 16), strict=True)",
           (_t("tests/test_vit.py", "pyramid"),)),
    Mutant("ViT: pooling not validated", "config.py",
           '"model.vit_pool": lambda: check_vit_pool(model.arch, model.vit_pool),', '"model.vit_pool": lambda: None,',
           (_t("tests/test_vit.py", "vit_pool_avg"),)),
    Mutant("ViT: avg pooling ignored", "models/encoder.py",
           '"global_pool": vit_pool', '"global_pool": "token"',
           (_t("tests/test_vit.py", "vit_pool_avg"),)),
    Mutant("ViT: avg pooling with timm's fc_norm (other keys)", "models/encoder.py",
           '"fc_norm": False', '"fc_norm": None',
           (_t("tests/test_vit.py", "vit_pool_avg"),)),
    Mutant("ViT: card pooling not applied on load", "weights/formats.py",
           "self.bands[modality], self.vit_pool)", "self.bands[modality])",
           (_t("tests/test_vit.py", "card_records"),)),
    Mutant("ViT: layer decay one layer off", "optim.py",
           "layer = int(head[1]) + 1", "layer = int(head[1])",
           (_t("tests/test_vit.py", "layer_decay_scales"),)),
    Mutant("ViT: AdamW decays the position embedding and class token", "optim.py",
           ' and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES', "",
           (_t("tests/test_vit.py", "layer_decay_scales or no_weight_decay"),)),
    Mutant("ViT: transfer AdamW decays what pretraining does not", "evaluate/module.py",
           'o.name == "sgd" or decays(name, p)', 'o.name == "sgd" or p.ndim >= 2',
           (_t("tests/test_vit.py", "layer_decay_scales"),)),
    Mutant("ViT: layer decay allowed for a linear probe", "evaluate/transfer/config.py",
           'self.layer_decay != 1 and self.resolved_protocol != "finetune"', "False",
           (_t("tests/test_vit.py", "layer_decay_is_refused"),)),
    Mutant("ViT: explain's CAM layer searched like a CNN's (the patch embedding)", "explain/compute.py",
           "    if isinstance(encoder, VisionTransformer):\n        last", "    if False:\n        last",
           (_t("tests/test_vit.py", "explain_runs"),)),
    Mutant("ViT: GradCAM on the last block's output", "explain/compute.py",
           "encoder.blocks[last].norm1)", "encoder.blocks[last])",
           (_t("tests/test_vit.py", "gradcam"),)),
    Mutant("ViT: GradCAM channel weights averaged over channels too", "explain/compute.py",
           ".mean(dim=(1, 2), keepdim=True)", ".mean(dim=(1, 2, 3), keepdim=True)",
           (_t("tests/test_vit.py", "gradcam"),)),
    Mutant("run lock: same-process second run not refused", "train/engine.py",
           "if key in _HELD:", "if False:",
           (_t("tests/test_bad_input.py", "second_process"),)),
]  # fmt: skip


def _selection(spec: str) -> list[str]:
    path, _, k = spec.partition("::-k ")
    return [path, "-k", k] if k else [path]


def run(mutant: Mutant, tmp: Path) -> tuple[str, float]:
    """``caught``, ``SURVIVED`` or ``STALE`` (the original text is not found exactly once), and the seconds taken."""
    src = tmp / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    target = src / "decur" / mutant.file
    text = target.read_text()
    if text.count(mutant.old) != 1:
        return "STALE", 0.0
    target.write_text(text.replace(mutant.old, mutant.new))
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    for spec in mutant.tests:
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow",
               *_selection(spec)]  # fmt: skip
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode == 1:  # tests failed: caught (5 = nothing selected, 2+ = an error of the harness)
            return "caught", time.perf_counter() - started
        if done.returncode not in (0, 1):
            return f"ERROR ({done.returncode}: {done.stdout.strip().splitlines()[-1:]})", time.perf_counter() - started
    return "SURVIVED", time.perf_counter() - started


def main(argv: list[str]) -> int:
    """Run the mutants whose names contain any of ``argv`` (all without arguments); 1 when any is not caught."""
    chosen = [m for m in MUTANTS if not argv or any(a in m.name for a in argv)]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="decur-mutants-") as tmp:
        print(f"{'mutant':<58} {'result':<10} seconds")
        for mutant in chosen:
            result, seconds = run(mutant, Path(tmp))
            bad += result != "caught"
            print(f"{mutant.name:<58} {result:<10} {seconds:6.1f}", flush=True)
    print(f"{len(chosen) - bad} of {len(chosen)} mutants caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
