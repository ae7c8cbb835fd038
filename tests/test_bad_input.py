"""Bad input as a new user makes it: each ends in one line naming the file or field and the fix, nothing lost.

Every test here was checked to fail with its bug put back (see the mutation list in ``tests/mutants.py``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from decur.cli import main
from decur.config import ConfigError, load_config
from decur.data.errors import DatasetError
from decur.errors import RunError
from decur.train.run import pretrain

from .conftest import REPO

SMOKE = REPO / "configs" / "smoke.yaml"
TINY = ["data.length=16", "trainer.max_epochs=1", "eval.enabled=false"]


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.startswith("decur: error:"), err[-2000:]
    return err


@pytest.fixture(scope="module")
def finished_run(module_tmp) -> Path:
    run = module_tmp("finished") / "run"
    pretrain(load_config(SMOKE, TINY), run)
    return run


# ---- the run folder ----------------------------------------------------------------------------------------------


def test_a_second_process_on_the_same_folder_is_refused_naming_the_holder(tmp_path, capsys):
    from decur.train.engine import run_lock

    with run_lock(tmp_path / "run"):  # another trainer holds the folder (here: this process)
        with pytest.raises(RunError, match=r"already training in this folder \(pid \d+ on "):
            pretrain(load_config(SMOKE, TINY), tmp_path / "run")
        assert main(["pretrain", "--config", str(SMOKE), "--output", str(tmp_path / "run"), *TINY]) == 1
        assert "already training" in _one_line_error(capsys)
    assert not (tmp_path / "run" / "metrics.csv").exists()  # the refused process wrote nothing
    pretrain(load_config(SMOKE, TINY), tmp_path / "run")  # released: the folder is usable


def test_the_lock_is_released_when_training_fails(tmp_path):
    from decur.train.engine import run_lock

    with pytest.raises(ConfigError):
        pretrain(load_config(SMOKE, [*TINY, "data.batch_size=64"]), tmp_path)  # exceeds the dataset
    with run_lock(tmp_path):
        pass  # nothing holds it


def test_a_failed_start_does_not_bind_the_folder_to_its_config(tmp_path, capsys):
    out = tmp_path / "run"
    # the first attempt asks for devices this machine does not have: refused before training
    args = ["pretrain", "--config", str(SMOKE), "--output", str(out), *TINY]
    assert main([*args, "trainer.accelerator=gpu"]) == 2
    assert "trainer" in _one_line_error(capsys)
    assert not (out / "config.yaml").exists()
    assert main([*args, "trainer.accelerator=cpu", "optim.lr_weights=0.3"]) == 0  # the corrected command runs
    capsys.readouterr()
    # a start that failed after the config was written but before a checkpoint does not bind it either
    (out / "checkpoints" / "last.ckpt").unlink()
    assert main([*args, "optim.lr_weights=0.5"]) == 0
    capsys.readouterr()
    assert main([*args, "optim.lr_weights=0.7"]) == 2  # a run with a checkpoint: a changed config is refused
    assert "lr_weights: 0.5 -> 0.7" in _one_line_error(capsys)


def test_a_full_disk_while_saving_leaves_the_previous_checkpoint_and_no_tmp(tmp_path, monkeypatch, capsys):
    import decur.train.callbacks as callbacks

    out = tmp_path / "run"
    pretrain(load_config(SMOKE, TINY), out)
    before = (out / "checkpoints" / "last.ckpt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"x" * 4096)  # part of the file got written, then the device filled up
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4096 vs 8192")

    monkeypatch.setattr(callbacks.torch, "save", full_disk)
    args = ["pretrain", "--config", str(SMOKE), "--output", str(out), *TINY[:1], "trainer.max_epochs=2",
            "eval.enabled=false"]  # fmt: skip
    real_usage = callbacks.shutil.disk_usage
    monkeypatch.setattr(callbacks.shutil, "disk_usage", lambda p: real_usage(p)._replace(free=4096))  # full
    assert main(args) == 1
    err = _one_line_error(capsys)
    assert "no space left on device" in err and "previous checkpoint is intact" in err and "last.ckpt" in err
    assert not (out / "checkpoints" / "last.ckpt.tmp").exists()
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before
    monkeypatch.setattr(callbacks.shutil, "disk_usage", real_usage)  # the same failure with space left: not "full"
    assert main(args) == 1
    err = _one_line_error(capsys)
    assert "no space" not in err and "unexpected pos" in err and "previous checkpoint is intact" in err

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"x" * 4096)
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    monkeypatch.setattr(callbacks.torch, "save", interrupted)
    assert main(args) == 130  # through Lightning's own Ctrl-C shutdown
    err = capsys.readouterr().err
    assert "decur: interrupted" in err and "no space" not in err
    assert not (out / "checkpoints" / "last.ckpt.tmp").exists()
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before
    monkeypatch.setattr(callbacks.torch, "save", real_save)
    assert main(args) == 0  # space freed: the same command resumes from epoch 1
    assert "resuming" in capsys.readouterr().out


def test_an_intact_checkpoint_decur_cannot_unpickle_is_not_called_corrupt(finished_run, tmp_path, capsys):
    import argparse
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    ckpt = out / "checkpoints" / "last.ckpt"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {}}, ckpt)  # whole, written by another script
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(out), *TINY]) == 1
    err = _one_line_error(capsys)
    assert "intact" in err and "corrupt" not in err and "delete" not in err and str(ckpt) in err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_a_damaged_or_foreign_checkpoint_on_resume_is_one_line(finished_run, tmp_path, capsys, damage):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    ckpt = out / "checkpoints" / "last.ckpt"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00" * 1000)
    else:
        torch.save({"epoch": 3, "model": {"w": torch.zeros(2)}, "optimizer": {}}, ckpt)  # another program's
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(out), *TINY]) == 1
    err = _one_line_error(capsys)
    assert str(ckpt) in err and ("not a decur checkpoint" if damage == "foreign" else "truncated or corrupt") in err
    assert len(err) < 600 and "resuming" not in capsys.readouterr().out


def test_explain_and_export_without_a_checkpoint_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--modality", "sar", "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "no checkpoint here" in _one_line_error(capsys)
    assert main(["explain", str(tmp_path / "empty"), "--out", str(tmp_path / "ex")]) == 1
    assert "no checkpoint here" in _one_line_error(capsys)


def test_an_output_below_a_regular_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(tmp_path / "file" / "run"), *TINY]) == 1
    assert "file" in _one_line_error(capsys)


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError):
        main(
            [
                "--debug",
                "export",
                str(tmp_path / "empty"),
                "--modality",
                "sar",
                "--out",
                str(tmp_path / "x.safetensors"),
            ]
        )


def test_the_data_may_move_between_attempts(finished_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    # the synthetic data has no folder; the run's identity must not include data.root either way
    summary = pretrain(load_config(SMOKE, [*TINY[:1], "trainer.max_epochs=2", "eval.enabled=false",
                                           "data.root=/scratch/moved/"]), out)  # fmt: skip
    assert summary["resumed_from"] == {"epoch": 1, "step": 1}
    assert "data.root changed from None to /scratch/moved/" in (out / "history.log").read_text()
    # a second move: the log keeps both
    pretrain(load_config(SMOKE, [*TINY[:1], "trainer.max_epochs=3", "eval.enabled=false",
                                 "data.root=/scratch/again/"]), out)  # fmt: skip
    lines = (out / "history.log").read_text().splitlines()
    assert len(lines) == 2 and "to /scratch/moved/" in lines[0]
    assert "from /scratch/moved/ to /scratch/again/" in lines[1]


# ---- configs -----------------------------------------------------------------------------------------------------


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  dataset: synthetic\n  length: [1, 2\n")
    assert main(["pretrain", "--config", str(bad)]) == 2
    err = _one_line_error(capsys)
    assert "bad.yaml line" in err and "not valid YAML" in err
    assert main(["pretrain", "--config", str(SMOKE), "data.length=[1"]) == 2
    assert "data.length=[1" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.arch=resnet1000", "model.arch"),
        ("model.arch=vit_base_r50_s16_224", "model.arch"),
        ("data.max_cloud_fraction=0.5", "data.max_cloud_fraction"),
    ],
)
def test_config_fields_decur_cannot_honour_are_refused(override, field, capsys):
    assert main(["pretrain", "--config", str(SMOKE), override]) == 2
    assert field in _one_line_error(capsys)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(SMOKE, [override]).validate()


def test_cloud_filter_needs_a_product_with_a_cloud_mask():
    base = ["data.dataset=ssl4eo_s12_v11", "data.root=.", "data.max_cloud_fraction=0.3"]
    s1_only = ["data.modalities=[{name: s1grd, bands: 2, augment: sar}]", "method.name=barlow_twins_single"]
    with pytest.raises(ConfigError, match=r"max_cloud_fraction.*s2l1c or s2l2a.*\['s1grd'\]"):
        load_config(None, [*base, *s1_only]).validate(check_paths=False)
    rgb = ["data.modalities=[{name: s1grd, bands: 2, augment: sar}, {name: s2rgb, bands: 3, augment: rgb}]"]
    with pytest.raises(ConfigError, match="max_cloud_fraction"):
        load_config(None, [*base, *rgb]).validate(check_paths=False)
    l2a = ["data.modalities=[{name: s1grd, bands: 2, augment: sar}, {name: s2l2a, bands: 12, augment: optical}]"]
    load_config(None, [*base, *l2a]).validate(check_paths=False)


def test_validate_checks_every_shipped_config_of_every_kind(capsys):
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert main(["validate", *map(str, configs)]) == 0
    out = capsys.readouterr().out
    kinds = {line.split("(")[1].split(",")[0].rstrip(")") for line in out.splitlines() if ": ok (" in line}
    assert kinds == {"pretrain", "transfer", "experiment", "sweep", "convergence", "split"}
    assert out.count(": ok (") == len(configs)


def test_validate_names_each_failing_file_and_checks_all(tmp_path, capsys):
    bad_transfer = tmp_path / "t.yaml"
    bad_transfer.write_text("task: classification\ndataset: synthetic\nseeds: []\n")
    bad_sweep = tmp_path / "s.yaml"
    bad_sweep.write_text("parameter: method.common_share\nvalues: [0.5, 2.0]\n")
    unknown = tmp_path / "u.yaml"
    unknown.write_text("lerning_rate: 0.1\n")
    good = REPO / "configs" / "transfer_geonrw.yaml"
    assert main(["validate", str(bad_transfer), str(good), str(bad_sweep), str(unknown)]) == 2
    out = capsys.readouterr().out
    assert f"{bad_transfer}: FAILED" in out and "`seeds`" in out
    assert f"{good}: ok (transfer)" in out
    assert f"{bad_sweep}: FAILED" in out and "method.common_share" in out
    assert f"{unknown}: FAILED" in out and "lerning_rate" in out
    assert main(["validate", "--kind", "transfer", str(good)]) == 0


def test_validate_kind_and_check_paths_change_the_outcome(tmp_path, capsys):
    transfer = REPO / "configs" / "transfer_geonrw.yaml"
    assert main(["validate", "--kind", "pretrain", str(transfer)]) == 2  # a transfer file read as a pretraining one
    assert f"{transfer}: FAILED" in capsys.readouterr().out
    cfg = tmp_path / "p.yaml"
    modalities = "[{name: s1, bands: 2, augment: sar}, {name: s2, bands: 13, augment: optical}]"
    cfg.write_text(f"data:\n  dataset: ssl4eo_s12\n  root: {tmp_path / 'nowhere'}\n  modalities: {modalities}\n")
    assert main(["validate", str(cfg)]) == 0  # the paths are not looked at by default
    assert main(["validate", "--check-paths", str(cfg)]) == 2
    assert "nowhere" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["transfer", "experiment"])
def test_empty_seed_lists_are_refused(command, tmp_path, capsys, monkeypatch):
    import decur.evaluate.transfer.run as transfer
    import decur.train.run as run

    # refused before any work: nothing may be trained or read (and a regression fails at once, not after a grid)
    monkeypatch.setattr(run, "pretrain", lambda *a, **k: pytest.fail("pretrained despite seeds=[]"))
    monkeypatch.setattr(transfer, "load_data", lambda *a, **k: pytest.fail("read data despite seeds=[]"))
    assert main([command, "--output", str(tmp_path / "x"), "seeds=[]"]) == 2
    assert "seeds" in _one_line_error(capsys)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


@pytest.mark.parametrize("kind", ["safetensors", "foreign", "missing", "run_without_checkpoint"])
def test_pretrained_is_validated_before_any_data_are_read(kind, tmp_path, monkeypatch):
    import decur.evaluate.transfer.run as transfer
    from decur.evaluate.transfer import TransferConfig

    path = tmp_path / {"safetensors": "enc.safetensors", "foreign": "x.ckpt"}.get(kind, "run")
    if kind == "safetensors":
        from safetensors.torch import save_file

        save_file({"conv1.weight": torch.zeros(1)}, str(path))
    elif kind == "foreign":
        torch.save({"epoch": 1, "model": {}, "optimizer": {}}, path)
    elif kind == "run_without_checkpoint":
        path.mkdir()
    monkeypatch.setattr(transfer, "load_data", lambda run: pytest.fail("data read before pretrained was checked"))
    with pytest.raises(ConfigError, match=r"`pretrained`") as err:
        transfer.run_transfer(TransferConfig(pretrained=str(path)), tmp_path / "out")
    assert "weights_only" not in str(err.value)


# ---- data ------------------------------------------------------------------------------------------------------


def _depth_folder(root: Path, values_mm: list[int]) -> Path:
    root.mkdir(parents=True)
    for i, v in enumerate(values_mm):
        depth = np.full((24, 32), v, np.uint16)
        depth[::5] = 0
        Image.fromarray(depth).save(root / f"d{i}.png")
    return root


def test_hha_never_writes_over_its_input(tmp_path, capsys):
    depth = _depth_folder(tmp_path / "Depth", [2000, 2500])
    before = {p.name: p.read_bytes() for p in depth.iterdir()}
    for dst in (depth, tmp_path / "x" / ".." / "Depth"):
        assert main(["data", "hha", str(depth), str(dst), "--encoding", "mm"]) == 1
        assert "would overwrite the depth images" in _one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in depth.iterdir()} == before
    assert main(["data", "hha", str(depth), str(tmp_path / "HHA"), "--encoding", "mm"]) == 0
    assert sorted(p.name for p in (tmp_path / "HHA").iterdir()) == ["d0.png", "d1.png"]


@pytest.mark.parametrize(
    ("values", "encoding", "note"),
    [([0, 0], "mm", "no valid pixel"), ([20000, 30000], "mm", "beyond 8 m"), ([1000, 1500], "0.1mm", "nearer")],
)
def test_hha_warns_on_implausible_depth(tmp_path, values, encoding, note):
    from decur.data.rgbd import convert_folder_to_hha

    depth = _depth_folder(tmp_path / "Depth", values)
    with pytest.warns(UserWarning, match=f"2 depth image.*{note}.*--encoding"):
        convert_folder_to_hha(depth, tmp_path / "HHA", encoding)


def test_plausible_depth_gives_no_warning(tmp_path):
    import warnings

    from decur.data.rgbd import convert_folder_to_hha

    depth = _depth_folder(tmp_path / "Depth", [1500, 4000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_folder_to_hha(depth, tmp_path / "HHA", "mm")


def test_geonrw_city_subsets_from_the_config_and_small_tiles(tmp_path, capsys):
    from decur.data.errors import DatasetError
    from decur.data.geonrw import GeoNRW
    from decur.evaluate.transfer import TransferConfig, load_data

    from .data.geonrw.data import generate

    root = generate(tmp_path / "geonrw", tile=250)  # one 250 px patch per tile, the transfer protocol's size
    cities = sorted(p.name for p in root.iterdir() if p.is_dir())
    run = TransferConfig(task="segmentation", dataset="geonrw", root=str(root), train_cities=cities[:1],
                      test_cities=cities[-1:])  # fmt: skip
    data = load_data(run.validate())
    assert {t.parent.name for t in data.train.tiles} == {cities[0]}  # type: ignore[attr-defined]
    assert {t.parent.name for t in data.test.tiles} == {cities[-1]}  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="train_cities"):
        TransferConfig(dataset="synthetic", train_cities=["x"]).validate()
    with pytest.raises(DatasetError, match=r"rgb\.jp2.*patch_size 500 does not divide"):
        GeoNRW(root, "train", patch_size=500, cities=tuple(cities[:1]))  # larger than the tiles


def test_a_stale_bigearthnet_pairing_cache_is_rebuilt(tmp_path):
    import shutil

    from decur.data.bigearthnet import BigEarthNetMM

    from .data.bigearthnet.data import make_v1

    root = make_v1(tmp_path / "ben")
    s1 = root / "BigEarthNet-S1-v1.0"
    moved = tmp_path / "later"
    moved.mkdir()
    first = sorted(s1.iterdir())[0]
    shutil.move(str(first), moved / first.name)  # extracted partly
    with pytest.raises(Exception, match="have no S1 patch"):
        BigEarthNetMM(root, "train")
    assert (root / ".decur-bigearthnet-s1.json").is_file()
    shutil.move(str(moved / first.name), s1 / first.name)  # the user extracts the rest, as the error said
    assert len(BigEarthNetMM(root, "train")) > 0


def test_a_raw_bigearthnet_v2_tree_transfers_directly(tmp_path):
    from decur.data.bigearthnet import BigEarthNetV2
    from decur.evaluate.transfer import TransferConfig, load_data

    from .data.bigearthnet.data import make_v2

    root = make_v2(tmp_path / "v2")
    data = load_data(TransferConfig(dataset="bigearthnet", root=str(root), test_split="validation").validate())
    assert isinstance(data.train, BigEarthNetV2) and set(data.train[0]) == {"s1", "s2", "label"}


def test_v11_check_decodes_every_chunk(tmp_path, capsys):
    import zipfile

    from .data.ssl4eo_v11.data import make_v11

    split = make_v11(tmp_path, files=1, samples=2, size=8, folders=("S1GRD", "S2L1C"))
    path = next((split / "S2L1C").glob("*.zarr.zip"))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("bands/0.3.0.0.0")  # the last timestamp: a check of timestamp 0 alone misses it
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start : start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    assert main(["data", "check", str(split), "--dataset", "ssl4eo_s12_v11"]) == 1
    assert "bands/0.3.0.0.0 cannot be decoded" in capsys.readouterr().out
    assert main(["data", "check", str(split), "--dataset", "ssl4eo_s12_v11", "--quick"]) == 0  # said in --help


def test_a_lock_held_elsewhere_refuses_at_once(tmp_path):
    """While one holder trains (here a thread), a second taker is refused at once, naming the holder's pid."""
    from decur.train.engine import run_lock

    errors: list[BaseException] = []
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with run_lock(tmp_path):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(10)
    try:
        with run_lock(tmp_path):
            pass
    except RunError as err:
        errors.append(err)
    release.set()
    t.join()
    assert len(errors) == 1 and f"pid {os.getpid()}" in str(errors[0])


_HOLDER = """
import os, sys, time
from pathlib import Path
from decur.train.engine import run_lock
with run_lock(Path(sys.argv[1])):
    worker = os.fork()
    if worker == 0:  # a forked loader worker: it inherits the open lock file
        time.sleep(60)
        os._exit(0)
    print(worker, flush=True)
    time.sleep(60)
"""


def test_a_lock_of_another_process_refuses_and_dies_with_it_not_with_its_workers(tmp_path):
    """Another process's lock refuses naming its pid; killed, it frees the folder at once, although a forked worker
    (as a DataLoader's) still runs with the lock file open."""
    import contextlib
    import signal
    import subprocess
    import sys

    from decur.train.engine import run_lock

    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    try:
        with pytest.raises(RunError, match=f"pid {proc.pid} on "):
            with run_lock(tmp_path):
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with run_lock(tmp_path):  # free at once: the orphaned worker does not hold it
            pass
    finally:
        proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def test_validate_a_folder_checks_the_configs_in_it(tmp_path, capsys):
    assert main(["validate", str(REPO / "configs")]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(list((REPO / "configs").glob("*.yaml"))) and "does not exist" not in out
    assert main(["validate", str(tmp_path)]) == 2
    assert "a folder without .yaml files" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "value"),
    [("--ig-steps", "0"), ("--samples", "0"), ("--samples", "2"), ("--batch-size", "2"), ("--alignment-batches", "0")],
)
def test_explain_options_out_of_range_are_one_line_naming_the_option(tmp_path, capsys, option, value):
    assert main(["explain", str(tmp_path / "no-run"), "--out", str(tmp_path / "ex"), option, value]) == 2
    err = _one_line_error(capsys)
    assert f"explain option {option}: must be >=" in err and not (tmp_path / "ex").exists()


@pytest.mark.parametrize(("option", "value"), [("--workers", "-1"), ("--size", "0"), ("--workers", "two")])
def test_pack_numbers_are_checked_before_any_work(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "pack", str(tmp_path), str(tmp_path / "out"), option, value])
    assert exit_.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err and not (tmp_path / "out").exists()


# ---- the last bad inputs of issue 35, each one line ----------------------------------------------------------------


def test_another_runs_checkpoint_in_the_folder_is_refused_before_resuming(finished_run, tmp_path, capsys):
    """Another run's last.ckpt (wider projector) under this run's config: one line, not 20,000 characters of keys."""
    import shutil

    other = tmp_path / "other"
    pretrain(load_config(SMOKE, [*TINY, "model.projector=[32, 32, 32]"]), other)
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    shutil.copy(other / "checkpoints" / "last.ckpt", out / "checkpoints" / "last.ckpt")
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(out), *TINY, "trainer.max_epochs=3"]) == 1
    err = _one_line_error(capsys)
    assert "holds another model's weights" in err and "of another shape" in err and len(err) < 600
    assert "resuming" not in capsys.readouterr().out


def test_a_duplicate_key_in_a_config_file_is_refused_naming_its_lines(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text("data:\n  batch_size: 16\ntrainer:\n  max_epochs: 2\ndata:\n  crop_size: 24\n")
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert "line 5" in out and "key 'data' given twice (first on line 1)" in out


def test_data_check_splits_are_choices_and_a_split_a_dataset_lacks_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", str(tmp_path), "--dataset", "geonrw", "--split", "val2"])
    assert exit_.value.code == 2 and "invalid choice: 'val2'" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path), "--dataset", "geonrw", "--split", "val"]) == 1
    err = _one_line_error(capsys)
    assert "choose --split among ['train', 'test']" in err


def test_hha_of_a_folder_holding_an_rgb_image_is_one_line(tmp_path, capsys):
    src = tmp_path / "depth"
    src.mkdir()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(src / "frame.png")
    assert main(["data", "hha", str(src), str(tmp_path / "hha"), "--encoding", "mm"]) == 1
    err = _one_line_error(capsys)
    assert "frame.png" in err and "3-channel image, not a one-channel depth map" in err


def test_export_of_one_modality_onto_a_folder_is_one_line(finished_run, tmp_path, capsys):
    folder = tmp_path / "enc.safetensors"
    folder.mkdir()
    assert main(["export", str(finished_run), "--modality", "sar", "--out", str(folder)]) == 1
    assert "is a folder; name a file" in _one_line_error(capsys)


def test_explain_refuses_a_transfer_checkpoint_and_a_one_modality_run(finished_run, tmp_path, capsys):
    import shutil

    seed = tmp_path / "seed0"
    shutil.copytree(finished_run, seed)
    ckpt = seed / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=False)
    state["hyper_parameters"] = {"num_classes": 8}  # what a transfer seed's module records instead
    torch.save(state, ckpt)
    assert main(["explain", str(seed), "--out", str(tmp_path / "x")]) == 1
    assert "a checkpoint of another kind of run" in _one_line_error(capsys)
    single = tmp_path / "single"
    one = ["method.name=barlow_twins_single", "data.modalities=[{name: sar, bands: 2, augment: sar}]"]
    pretrain(load_config(SMOKE, [*TINY, *one]), single)
    assert main(["explain", str(single), "--out", str(tmp_path / "y")]) == 2
    assert "one-modality run" in _one_line_error(capsys)
    assert main(["explain", str(finished_run), "--out", str(tmp_path / "z"), "--compare", str(single),
                 "--samples", "8", "--ig-steps", "2"]) == 2  # fmt: skip
    assert "compare runs of the same modalities" in _one_line_error(capsys)


def test_paired_folders_with_unmatched_stems_name_the_real_field_and_it_works(tmp_path, capsys):
    from decur.data.paired import PairedFolders

    from .data import write_tif

    for i in range(6):
        write_tif(tmp_path / "s1" / f"t{i}.tif", np.zeros((2, 16, 16), np.float32))
        if i != 3:
            write_tif(tmp_path / "s2" / f"t{i}.tif", np.zeros((13, 16, 16), np.uint16))
    with pytest.raises(DatasetError, match=r"set data\.skip_bad=true to leave them out"):
        PairedFolders(tmp_path, {"s1": "s1", "s2": "s2"})
    cfg = load_config(REPO / "configs" / "paired_folders_example.yaml", [f"data.root={tmp_path}", "data.skip_bad=true"])
    from decur.data.build import build_dataset

    assert len(build_dataset(cfg)) == 5


def test_band_counts_that_disagree_with_the_files_the_statistics_or_the_product_are_one_line(tmp_path, capsys):
    """Checked before any training, each naming both numbers and the fix (issue 35 §3)."""
    from .data import write_tif

    for i in range(4):
        write_tif(tmp_path / "s1" / f"t{i}.tif", np.zeros((2, 16, 16), np.float32))
        write_tif(tmp_path / "s2" / f"t{i}.tif", np.ones((12, 16, 16), np.uint16))  # L2A-like: 12 bands
    config = str(REPO / "configs" / "paired_folders_example.yaml")
    small = [f"data.root={tmp_path}", "data.crop_size=16", "data.batch_size=4", "data.num_workers=0",
             "model.arch=resnet18", "model.projector=[16, 16]", "trainer.max_epochs=1"]  # fmt: skip
    assert main(["pretrain", "--config", config, "--output", str(tmp_path / "run"), *small]) == 2
    err = _one_line_error(capsys)
    assert "s2 is given 13 bands, but the data at" in err and "hold 12: set bands: 12 for s2" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    stats = (
        "data.modalities=[{name: s1, bands: 2, augment: sar}, {name: s2, bands: 13, augment: optical, mean: [1, 2]}]"
    )
    assert main(["validate", config, "--kind", "pretrain"]) == 0
    capsys.readouterr()
    assert main(["pretrain", "--config", config, "--output", str(tmp_path / "run2"), *small, stats]) == 2
    assert "`data.modalities[1].mean`: needs one value per band (13)" in _one_line_error(capsys)
    ssl4eo = ["data.dataset=ssl4eo_s12", f"data.root={tmp_path}",
              "data.modalities=[{name: s1, bands: 2, augment: sar}, "
              "{name: s2, bands: 12, augment: optical}]"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"s2 has 12 bands but data\.s2_product=s2c has 13: set bands: 13, or "
                       r"data\.s2_product=s2a for the L2A \(12-band\) product"):  # fmt: skip
        load_config(SMOKE, ssl4eo).validate(check_paths=False)
    load_config(SMOKE, [*ssl4eo, "data.s2_product=s2a"]).validate(check_paths=False)  # chosen by name: accepted
