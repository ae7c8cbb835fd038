"""Every benchmark script runs end to end with tiny models (results redirected), so `make bench` cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

TINY = ["data.batch_size=4", "data.image_size=32", "data.crop_size=24", "model.projector=[32, 32]"]
SCRIPTS = {
    "step_overhead": ["--set", *TINY, "--warmup", "0", "--repeats", "1", "--rounds", "1", "--tag", "t"],
    "transfer_throughput": ["--batch", "2", "--size", "32", "--warmup", "0", "--repeats", "1", "--rounds", "1"],
    "bigearthnet_loader": ["--batch", "2", "--batches", "1", "--workers", "0"],
    "embed_throughput": ["--batch", "2", "--batches", "1", "--size", "32", "--rounds", "1", "--projector", "16", "16"],
    "cmx_step": [
        "--arch",
        "mit_b0",
        "--decoder-dim",
        "32",
        "--batch",
        "1",
        "--height",
        "64",
        "--width",
        "64",
        "--warmup",
        "0",
        "--repeats",
        "1",
    ],
    "loader_throughput": [
        "--locations",
        "2",
        "--samples",
        "2",
        "--batch",
        "2",
        "--crop",
        "32",
        "--workers",
        "1",
        "--v11-files",
        "2",
        "--v11-samples",
        "2",
        "--tag",
        "t",
    ],
    "ddp_overhead": ["--set", *TINY, "--warmup", "0", "--repeats", "1"],
    "e2e_packed": [
        "--locations",
        "8",
        "--epochs",
        "2",
        "--workers",
        "0",
        "--set",
        *TINY,
        "trainer.log_every_n_steps=1",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_benchmark_runs_and_writes_its_results(script, tmp_path):
    env = {**os.environ, "DECUR_BENCH_RESULTS": str(tmp_path), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *SCRIPTS[script]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(tmp_path.glob("*.json"))
    assert written, f"{script} wrote no results"
    assert all(json.loads(p.read_text()) for p in written)
    assert not (REPO / "benchmarks" / "results" / "step_overhead-cpu-t.json").exists()


@pytest.mark.slow
def test_transform_mismatch_measures_every_variant(tmp_path):
    from decur.config import load_config
    from decur.train.run import pretrain

    run = tmp_path / "run"
    pretrain(load_config(REPO / "configs" / "smoke.yaml", ["trainer.max_epochs=1", "eval.enabled=false"]), run)
    env = {**os.environ, "DECUR_BENCH_RESULTS": str(tmp_path), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = REPO / "benchmarks" / "transform_mismatch.py"
    cmd = [sys.executable, str(script), str(run), "--train", "32", "--test", "16"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "transform_mismatch.json").read_text())
    assert set(result["map"]) == {"matched", "release_8bit", "unstandardised"}
    assert all(0 <= r["map_micro"] <= 1 for r in result["map"].values())
