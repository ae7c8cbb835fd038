from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# DECUR_REAL_DATA: where the mutation tool runs the tests from a copy of the repository (mutants/)
REAL_DATA = Path(os.environ.get("DECUR_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

# `DECUR_TEST_THREADS=1 make test`: the whole suite under another intra-op thread count (reduction orders change;
# no test may depend on them). Subprocesses started by tests inherit it through OMP_NUM_THREADS where they set it.
if os.environ.get("DECUR_TEST_THREADS"):
    torch.set_num_threads(int(os.environ["DECUR_TEST_THREADS"]))


@pytest.fixture
def smoke_config() -> Path:
    return REPO / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """`tmp_path_factory.mktemp` for module-scoped fixtures, removed when the module's tests are done.

    The suite writes real-size checkpoints (a ResNet-50 run is ~180 MB); kept until the session ends, the module
    fixtures alone would hold gigabytes of the machine's /tmp.
    """
    made: list[Path] = []

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    for path in made:
        shutil.rmtree(path, ignore_errors=True)
