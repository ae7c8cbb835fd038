from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"

# `DECUR_TEST_THREADS=1 make test`: the whole suite under another intra-op thread count (reduction orders change;
# no test may depend on them). Subprocesses started by tests inherit it through OMP_NUM_THREADS where they set it.
if os.environ.get("DECUR_TEST_THREADS"):
    torch.set_num_threads(int(os.environ["DECUR_TEST_THREADS"]))


@pytest.fixture
def smoke_config() -> Path:
    return REPO / "configs" / "smoke.yaml"
