"""End-to-end pretraining: the CLI on configs/smoke.yaml, exact resume after a kill, NaN stop."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from decur.cli import main
from decur.config import load_config
from decur.errors import NonFiniteGradientError, NonFiniteLossError
from decur.train.run import pretrain

from .conftest import REPO

SMOKE = REPO / "configs" / "smoke.yaml"


def test_cli_smoke_run_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "multi-label mAP" in printed and "R² of factors" in printed
    for name in ("config.yaml", "metrics.csv", "loss.png", "summary.json", "checkpoints/last.ckpt"):
        assert (out / name).stat().st_size > 0, name
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]  # one copy of the state, not two
    summary = json.loads((out / "summary.json").read_text())
    for run in ("pretrained", "random_init", "random_init_bn"):
        maps = summary[run]["map"]
        assert set(maps) == {"optical+sar", "optical", "sar"}
        assert all(0 <= v["map_micro"] <= 1 for v in maps.values())
        assert {"features/optical+sar", "common/optical", "unique/sar"} <= set(summary[run]["r2"])
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch") and len(rows) >= 3
    with open(out / "metrics.csv", newline="") as f:  # healthy collapse monitors: emb_std near 1/sqrt(K = 64)
        monitors = list(csv.DictReader(f))
    assert all(0.3 / 8 < float(r["emb_std_optical"]) < 3 / 8 for r in monitors) and float(monitors[0]["rank_sar"]) > 5
    assert (out / "monitors.png").stat().st_size > 1000
    assert summary["resumed_from"] is None and summary["steps_run"] == summary["global_step"] > 0
    # the same command again finds the finished run and changes nothing: the checkpoint is byte-identical
    digest = hashlib.sha256((out / "checkpoints" / "last.ckpt").read_bytes()).hexdigest()
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(out)]) == 0
    assert hashlib.sha256((out / "checkpoints" / "last.ckpt").read_bytes()).hexdigest() == digest
    again = json.loads((out / "summary.json").read_text())
    assert again["steps_run"] == 0 and again["resumed_from"] == {"epoch": 2, "step": summary["global_step"]}
    # a different config in the same folder is refused instead of mixing two runs
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(out), "method.common_share=0.5"]) == 2
    assert "holds a run with a different config" in capsys.readouterr().err


def test_a_field_added_after_the_run_started_is_compared_with_its_default(tmp_path):
    from decur.config import ConfigError
    from decur.train.engine import check_same_run

    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump({"data": {"root": "x"}, "method": {"name": "decur"}}))  # an older decur's file
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")  # a run that started
    defaults = {"data": {"root": None, "timestamp_draw": "sample"}, "method": {"name": "decur"}}
    new = {"data": {"root": "x", "timestamp_draw": "sample"}, "method": {"name": "decur"}}
    assert check_same_run(new, saved, defaults=defaults) == []
    with pytest.raises(ConfigError, match="timestamp_draw"):  # a non-default value of the new field is a change
        check_same_run({**new, "data": {"root": "x", "timestamp_draw": "file"}}, saved, defaults=defaults)
    with pytest.raises(ConfigError, match="timestamp_draw"):  # without defaults, as before
        check_same_run(new, saved)


def _cli(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "decur",
        "pretrain",
        "--config",
        str(SMOKE),
        "--output",
        str(out),
        "trainer.max_epochs=4",
        "eval.enabled=false",
        *extra,
    ]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def _deterministic_columns(out: Path) -> list[dict[str, str]]:
    """``metrics.csv`` without the timing columns (samples/s, data wait, ETA differ between any two runs)."""
    with open(out / "metrics.csv", newline="") as f:
        timing = {"samples_per_s", "data_wait", "eta_min"}
        return [{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader(f)]


@pytest.mark.parametrize("workers", [pytest.param(0, marks=pytest.mark.slow), 2])  # 2 workers: the harder case
def test_resume_after_kill_continues_where_it_stopped_and_ends_identical(tmp_path, capsys, workers):
    """Killed with SIGKILL mid-run (a subprocess), resumed by the same command: the weights and the metrics history
    equal an uninterrupted run's. The uninterrupted run and the resume run in this process (one process start each
    saved) at the thread count the killed process is given, so all three reduce in the same order."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    full, killed = tmp_path / "full", tmp_path / "killed"
    extra = (f"data.num_workers={workers}", "trainer.max_epochs=3", "data.length=32")  # 3 epochs x 2 steps
    assert main(_cli(full, *extra)[3:]) == 0
    proc = subprocess.Popen(_cli(killed, *extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = torch.load(last, weights_only=False)["global_step"]
    assert 0 < interrupted_at < 3 * 2, "the run finished before it could be killed"
    capsys.readouterr()
    assert main(_cli(killed, *extra)[3:]) == 0, f"the resumed run failed after a kill at step {interrupted_at}"
    summary = json.loads((killed / "summary.json").read_text())
    # it started where it says, from the checkpoint, and ran only the remaining steps
    assert summary["resumed_from"] == {"epoch": interrupted_at // 2, "step": interrupted_at}
    assert f"step {interrupted_at}" in capsys.readouterr().out
    assert summary["steps_run"] == 3 * 2 - interrupted_at and summary["global_step"] == 6
    a, b = _weights(full), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # one history: no duplicated or missing steps in metrics.csv
    assert _deterministic_columns(killed) == _deterministic_columns(full)


def test_a_finished_run_extended_with_more_epochs_continues(tmp_path):
    out = tmp_path / "run"
    first = pretrain(load_config(SMOKE, ["trainer.max_epochs=1", "eval.enabled=false", "data.length=32"]), out)
    assert first["global_step"] == 2
    longer = pretrain(load_config(SMOKE, ["trainer.max_epochs=2", "eval.enabled=false", "data.length=32"]), out)
    assert longer["resumed_from"] == {"epoch": 1, "step": 2} and longer["steps_run"] == 2
    with open(out / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == 4


def test_inf_gradient_with_a_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    from decur.train.module import PretrainModule

    cfg = load_config(SMOKE, ["trainer.max_epochs=3", "eval.enabled=false"])
    original = PretrainModule.on_train_start

    def poison_after_first_epoch(self):
        original(self)
        weight = self.model.encoders["sar"].conv1.weight
        weight.register_hook(lambda g: g * float("inf") if self.global_step >= 5 else g)

    monkeypatch.setattr(PretrainModule, "on_train_start", poison_after_first_epoch, raising=False)
    with pytest.raises(NonFiniteGradientError, match=r"step 5 .*encoders\.sar\.conv1\.weight"):
        pretrain(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    for state in ckpt["optimizer_states"][0]["state"].values():  # no NaN reached the momentum buffers
        assert all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v))


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    from decur import methods

    cfg = load_config(SMOKE, ["trainer.max_epochs=3", "eval.enabled=false"])
    original = methods.Objective.forward
    calls = {"n": 0}

    def poisoned(self, z):
        calls["n"] += 1
        terms = original(self, z)
        if calls["n"] > 6:  # after the first epoch (4 steps) has been checkpointed
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(methods.Objective, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 6"):
        pretrain(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow  # ~30 s of two process starts; make test keeps the 2-process loss/gradient test (test_distributed)
@pytest.mark.parametrize("auto", [False, True], ids=["fixed", "common_dim_auto"])
def test_lightning_ddp_two_cpu_processes_on_the_real_training_path(tmp_path, auto):
    """`decur pretrain` itself under DDP (2 gloo processes launched by Lightning): the real module, sampler, gather and
    optimiser. Both ranks end with identical weights, their shards of each epoch are disjoint and cover the
    dataset, both log the same global loss, and `data.batch_size` is the global batch."""
    out, probe = tmp_path / "ddp", tmp_path / "probe"
    probe.mkdir()
    cmd = _cli(out, "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_epochs=2")
    if auto:  # the split is found from the gathered batch and broadcast: both ranks reorder alike (weights below)
        cmd += ["method.common_dim=auto", "method.auto_warmup=0.5"]
    cmd[1:3] = ["-m", "tests.ddp_probe"]  # the same CLI, recording what each rank does
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DECUR_PROBE": str(probe), "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    # 64 samples, global batch 16 split over 2 processes (8 each): 4 steps per epoch, as with one process
    assert ckpt["global_step"] == 8
    assert (out / "metrics.csv").exists() and (out / "summary.json").exists()
    if auto:
        split = ckpt["common_dim_auto"]
        assert split["found_at"] == 4 and split["count"] == 2 and split["found"] is not None
        assert ckpt["hyper_parameters"]["config"]["method"]["common_dim"] == split["found"]
    for epoch in (0, 1):
        shards = [set(map(int, (probe / f"indices-r{r}-e{epoch}.txt").read_text().split())) for r in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == 32 and not shards[0] & shards[1]
        assert shards[0] | shards[1] == set(range(64))
    losses = [[float(v) for v in (probe / f"loss-r{r}.txt").read_text().split()] for r in (0, 1)]
    assert len(losses[0]) == 8 and losses[0] == pytest.approx(losses[1], rel=1e-6)  # the same global loss
    w0, w1 = (torch.load(probe / f"weights-r{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0 if "running" not in k and "num_batches" not in k)


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        # the options of the first row are shown to take effect in test_each_option_has_its_observable_effect;
        # every loss is checked against a reference in test_losses: these end-to-end runs are in make test-slow
        pytest.param(
            "decur",
            ["trainer.precision=bf16-mixed", "model.channels_last=true", "model.share_projector=true"],
            marks=pytest.mark.slow,
        ),
        ("decur", ["method.reference_weighting=true", "method.cross_both_views=true", "data.share_crop=false"]),
        pytest.param("decur_no_intra", [], marks=pytest.mark.slow),
        ("decur_no_decoupling", ["optim.name=adamw", "optim.warmup_epochs=0.5"]),
        pytest.param("barlow_twins_cross", [], marks=pytest.mark.slow),
        ("barlow_twins_single", ["data.modalities=[{name: sar, bands: 2, augment: sar}]"]),
        pytest.param("simclr_cross", [], marks=pytest.mark.slow),
        ("clip", []),
        pytest.param("vicreg_cross", [], marks=pytest.mark.slow),
    ],
)
def test_every_method_and_option_trains(tmp_path, method, extra):
    overrides = ["data.length=32", "trainer.max_epochs=1", "eval.enabled=false", f"method.name={method}", *extra]
    summary = pretrain(load_config(SMOKE, overrides), tmp_path)
    assert summary["method"] == method
    assert all(math.isfinite(v) for v in summary["final_loss"].values())
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_compiled_run_trains_and_keeps_plain_checkpoint_keys(tmp_path):
    """trainer.compile=true: torch.compile in place; the checkpoint is loadable into an uncompiled module."""
    overrides = ["trainer.max_epochs=1", "eval.enabled=false", "data.length=32"]
    summary = pretrain(load_config(SMOKE, [*overrides, "trainer.compile=true"]), tmp_path / "compiled")
    assert math.isfinite(summary["final_loss"]["train/total"])
    state = torch.load(tmp_path / "compiled" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)
    from decur.train.module import PretrainModule

    module = PretrainModule.from_run(tmp_path / "compiled")  # strict load into plain modules
    assert module.model.encoders["optical"].conv1.weight.shape[1] == 13


def test_freed_tensor_memory_is_reused_without_page_faults():
    """After keep_freed_memory, a 20 MB tensor allocated and freed again costs no fresh pages from the kernel."""
    import resource

    from decur.train.host import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("not glibc: the allocator setting does not apply")
    for _ in range(20):  # the heap settles after a few blocks (its first growth faults pages in once)
        torch.ones(5_000_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(5_000_000)  # 20 MB, below the 32 MiB mmap ceiling
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 1000, f"{faults} minor page faults for 10 reused 20 MB blocks (mmap would take ~50,000)"


def test_seeded_dataset_draws_under_the_sample_seed_and_leaves_the_global_rng_alone():
    from torch.utils.data import Dataset

    from decur.data.sampling import SeededDataset

    class Draws(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, index):
            return {"x": torch.rand(3)}

    data = SeededDataset(Draws())
    state = torch.get_rng_state()
    drawn = data[(2, 77)]["x"]
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(77)
    assert torch.equal(drawn, torch.rand(3))  # the same draws as under torch.manual_seed(77)
    assert not torch.equal(drawn, data[(2, 78)]["x"])


def test_resume_accepts_layout_worker_and_longer_runs_but_not_other_changes(tmp_path):
    from decur.config import ConfigError, load_config
    from decur.train.engine import save_yaml
    from decur.train.run import _check_same_run

    saved = tmp_path / "config.yaml"
    save_yaml(load_config(None, []).to_dict(), saved)
    _check_same_run(load_config(None, ["optim.lr_weights=0.3"]), saved)  # no checkpoint: no run to continue
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    _check_same_run(load_config(None, ["data.root=/scratch/staged/"]), saved)  # the data moved: allowed, recorded
    assert "data.root changed from None to /scratch/staged/" in (tmp_path / "history.log").read_text()
    _check_same_run(load_config(None, ["model.channels_last=true", "data.num_workers=0"]), saved)
    _check_same_run(load_config(None, ["trainer.max_epochs=99"]), saved)  # extending a run
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs.*shorten"):
        _check_same_run(load_config(None, ["trainer.max_epochs=2"]), saved)
    with pytest.raises(ConfigError, match=r"optim\.lr_weights: 6\.0 -> 0\.3"):
        _check_same_run(load_config(None, ["optim.lr_weights=0.3", "trainer.max_epochs=99"]), saved)


@pytest.mark.parametrize("reference", [False, True])
def test_each_option_has_its_observable_effect(tmp_path, monkeypatch, reference):
    """bf16 runs the encoders in bf16, channels_last reaches the convolutions, the shared projector is one module,
    reference weighting changes how `total` is made of the terms."""
    from decur.train.module import PretrainModule

    seen: dict[str, object] = {}
    original = PretrainModule.on_train_start

    def record(self):
        original(self)
        conv = self.model.encoders["optical"].conv1
        conv.register_forward_hook(lambda m, args, out: seen.update(
            dtype=out.dtype, channels_last=args[0].is_contiguous(memory_format=torch.channels_last)))  # fmt: skip
        seen["shared"] = self.model.projectors["optical"] is self.model.projectors["sar"]

    monkeypatch.setattr(PretrainModule, "on_train_start", record, raising=False)
    options = ["trainer.precision=bf16-mixed", "model.channels_last=true", "model.share_projector=true"]
    if not reference:
        options = ["trainer.precision=32-true", "model.channels_last=false", "model.share_projector=false"]
    overrides = ["data.length=16", "trainer.max_epochs=1", "eval.enabled=false",
                 f"method.reference_weighting={str(reference).lower()}", *options]  # fmt: skip
    summary = pretrain(load_config(SMOKE, overrides), tmp_path)
    assert seen["dtype"] == (torch.bfloat16 if reference else torch.float32)
    assert seen["channels_last"] is reference and seen["shared"] is reference
    t = summary["final_loss"]
    plain = t["train/common"] + t["train/unique"] + t["train/intra_1"] + t["train/intra_2"]
    weighted = (t["train/intra_1"] + t["train/intra_2"] + (t["train/common"] + t["train/unique"]) / 2) / 3
    assert t["train/total"] == pytest.approx(weighted if reference else plain, rel=1e-4)
    assert t["train/total"] != pytest.approx(plain if reference else weighted, rel=1e-2)


def _wait_for(path: Path, proc: subprocess.Popen, step: int | None = None) -> None:
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if path.exists() and (step is None or _metrics_steps(path.parent.parent) >= step):
            return
        time.sleep(0.02)


def _metrics_steps(out: Path) -> int:
    try:
        with open(out / "metrics.csv", newline="") as f:
            return max((int(r["step"]) for r in csv.DictReader(f)), default=0)
    except (OSError, ValueError, KeyError):
        return 0


MID_EPOCH = ("data.num_workers=2", "trainer.max_epochs=2", "data.length=64", "trainer.log_every_n_steps=1")
"""2 epochs x 4 steps of 16 samples; the loaders' workers make the resumed epoch's order the harder case."""


def test_every_step_checkpoint_finds_its_metrics_row_already_written(tmp_path, monkeypatch):
    """A SIGKILL right after a step checkpoint must not lose that step's metrics row (seen as a flake of the test
    below: the checkpoint was written before the row, the kill fell between them, the resumed history lacked it)."""
    from decur.train.callbacks import AtomicCheckpointIO

    seen: list[tuple[int, int]] = []
    save = AtomicCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, storage_options=None):
        seen.append((checkpoint["global_step"], _metrics_steps(Path(path).parent.parent)))
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", recording)
    out = tmp_path / "run"
    assert main(_cli(out, *MID_EPOCH, "data.num_workers=0", "trainer.checkpoint_every=1")[3:]) == 0
    assert [step for step, _ in seen] == list(range(1, 9))
    assert all(rows == step for step, rows in seen), seen


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_or_stopped_mid_epoch_resumes_at_its_step_with_the_batches_the_epoch_had_left(tmp_path, capsys, sig):
    """SIGKILL after a step checkpoint (``trainer.checkpoint_every=1``) or SIGTERM (saved at once): the re-run
    starts inside the epoch, skips the batches done, and ends with the uninterrupted run's weights and history."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    full, cut = tmp_path / "full", tmp_path / "cut"
    extra = (*MID_EPOCH, "trainer.checkpoint_every=1") if sig == signal.SIGKILL else MID_EPOCH
    assert main(_cli(full, *MID_EPOCH)[3:]) == 0
    proc = subprocess.Popen(_cli(cut, *extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = cut / "checkpoints" / "last.ckpt"
    _wait_for(last if sig == signal.SIGKILL else cut / "metrics.csv", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    state = torch.load(last, weights_only=False)
    at = state["global_step"]
    assert 0 < at < 8, "the run finished before it could be stopped"
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and [line for line in err.splitlines() if line.strip()] == [
            "decur: stopped by SIGTERM/SIGUSR1; the checkpoint holds every finished step; re-run the same command "
            "to resume"
        ]
    capsys.readouterr()
    assert main(_cli(cut, *extra)[3:]) == 0
    summary = json.loads((cut / "summary.json").read_text())
    expected = {"epoch": at // 4, "step": at} | ({"batch": at % 4} if at % 4 else {})
    assert summary["resumed_from"] == expected
    assert summary["steps_run"] == 8 - at and summary["global_step"] == 8
    a, b = _weights(full), _weights(cut)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _deterministic_columns(cut) == _deterministic_columns(full)


@pytest.mark.parametrize(
    ("gpus", "accelerator", "asked", "expected"),
    [
        (0, "auto", (4, "ddp"), (1, "auto", "no GPU here: one CPU process runs it with the global batch of 256 kept "
                                            "(256 per device instead of 64)")),
        (1, "auto", (4, "ddp"), (1, "auto", "1 GPU(s) here runs it with the global batch of 256 kept (256 per device "
                                            "instead of 64)")),
        (2, "gpu", (4, "ddp"), (2, "ddp", "2 GPU(s) here runs it with the global batch of 256 kept (128 per device "
                                          "instead of 64)")),
        (8, "auto", (4, "ddp"), (4, "ddp", None)),  # enough devices: as asked
        (0, "cpu", (2, "ddp"), (2, "ddp", None)),  # CPU DDP asked for explicitly: kept
    ],
)  # fmt: skip
def test_the_asked_devices_are_fitted_to_the_machine_keeping_the_global_batch(monkeypatch, gpus, accelerator, asked,
                                                                              expected):  # fmt: skip
    from decur.config import EngineConfig
    from decur.train.engine import fit_to_machine

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    engine = EngineConfig(accelerator=accelerator, devices=asked[0], strategy=asked[1])
    fitted, note = fit_to_machine(engine, 256)
    assert (fitted.devices, fitted.strategy) == expected[:2]
    if expected[2] is None:
        assert note is None and fitted == engine
    else:
        assert (
            note == f"the config asks for 4 devices (ddp); {expected[2]}; set trainer.devices / trainer.strategy "
            "to choose otherwise"
        )
