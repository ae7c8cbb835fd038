"""Every command block of the README and the tutorials runs as written, so the docs cannot rot.

Each document's blocks run in order in one fresh folder (later commands read what earlier ones wrote), with the
configs of this checkout, on data generated there under the names the document uses (``my-pairs/``,
``BigEarthNet/``, ``checkpoint_0099.pth``, ``sunrgbd/``, ``ssl4eo-s12/train/``: the fixture generators of
``tests/data``, in the real layouts). Tiny overrides are appended to each ``decur`` command (:data:`TINY`, then
:data:`PER_DOC`: fewer samples, epochs and widths, smaller encoders; later overrides win, so the document's own
arguments all take effect unless one of these shrinks them; the release checkpoint is a ResNet-18 unless torchgeo is
installed to run the blocks that load it into torchgeo's ResNet-50). Not run: environment set-up lines (``make``,
``pip``, ``python -m venv``: ``make test`` itself did them), ``console`` blocks (commands that need several machines
or a dataset path the reader fills in; each says which test covers it) and Python blocks whose optional extra is not
installed.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from decur.cli import main

from .conftest import REPO
from .data import release_joint_state, write_tif
from .data.bigearthnet.data import make_v1
from .data.rgbd.data import make_sunrgbd
from .data.ssl4eo_v11.data import make_v11

DOCS = [REPO / "README.md", *sorted((REPO / "docs" / "tutorials").glob("*.md"))]
SETUP = ("make ", "pip ", "python -m venv", ".venv/bin/pip", "terratorch ")
TINY = {
    "pretrain": ["data.length=16", "data.batch_size=8", "data.crop_size=32", "data.num_workers=0",
                 "trainer.max_epochs=1", "model.arch=resnet18", "model.projector=[64, 64, 64]",
                 "method.common_dim=48", "trainer.precision=32-true", "eval.train_samples=64",
                 "eval.test_samples=32", "eval.random_init=false", "trainer.devices=1", "trainer.strategy=auto"],
    "transfer": ["epochs=1", "batch_size=4", "num_workers=0", "seeds=[0]", "train_samples=16", "test_samples=8",
                 "trainer.devices=1", "trainer.strategy=auto", "trainer.precision=32-true"],
    "explain": ["--samples", "8", "--batch-size", "4", "--alignment-batches", "1", "--ig-steps", "2"],
    "embed": ["samples=16", "batch_size=8", "num_workers=0"],
}  # fmt: skip
"""Appended to the ``decur`` command of the same name."""
PER_DOC = {
    "rgbd-cmx.md": {"pretrain": ["model.arch=mit_b0", "model.head_dim=64", "data.batch_size=4"],
                    "transfer": ["crop_size=[64, 64]", "decoder_dim=32", "batch_size=2", "warmup_epochs=0"]},
    "ssl4eo-v11-shards.md": {"pretrain": ["data.image_size=40"]},
    "common-unique.md": {"pretrain": ["eval.enabled=false"]},  # the tutorial reads explain's output only
}  # fmt: skip
"""Appended after :data:`TINY` for one document."""


def command_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, text)`` of every fenced code block of a Markdown file, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """The command lines of a shell block: comments and set-up lines left out."""
    lines = [line.split("  #")[0].split(" # ")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", *SETUP))]


def make_inputs(folder: Path, text: str) -> None:
    """The data a document names (module docstring), generated in ``folder``."""
    rng = np.random.default_rng(0)
    if "my-pairs" in text:
        for i in range(16):
            pairs = folder / "my-pairs"
            write_tif(pairs / "s1" / f"tile_{i:04d}.tif", rng.normal(-12, 4, (2, 40, 40)).astype(np.float32))
            write_tif(pairs / "s2" / f"tile_{i:04d}.tif", rng.integers(0, 6000, (13, 40, 40), np.uint16))
    if "BigEarthNet" in text:
        make_v1(folder / "BigEarthNet")
    if "checkpoint_0099.pth" in text:  # the release's ResNet-50 where a block hands it to torchgeo's resnet50
        state = release_joint_state("resnet50" if importlib.util.find_spec("torchgeo") else "resnet18")
        torch.save({"epoch": 99, "model": state, "optimizer": {}}, folder / "checkpoint_0099.pth")
    if "sunrgbd/" in text:
        make_sunrgbd(folder / "sunrgbd", per_size=1)
    if "ssl4eo-s12/train" in text:
        make_v11(folder / "ssl4eo-s12", files=4, samples=4, size=40)


def run_line(line: str, doc: str) -> None:
    words = shlex.split(line)
    assert words[0] == "decur", f"a command the test does not know how to run: {line!r}"
    sub = words[1]
    rc = main([*words[1:], *TINY.get(sub, []), *PER_DOC.get(doc, {}).get(sub, [])])
    assert rc == 0, f"{line!r} ended with exit status {rc}"


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_command_block_runs(doc, tmp_path, monkeypatch):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    make_inputs(tmp_path, doc.read_text())
    monkeypatch.chdir(tmp_path)
    ran = 0
    for lang, block in command_blocks(doc):
        if lang == "bash":
            for line in commands(block):
                run_line(line, doc.name)
                ran += 1
        elif lang == "python":
            extras = re.findall(r"pip install '?decur\[(\w+)\]", block)
            if all(importlib.util.find_spec(extra) for extra in extras):  # else: the optional extra is absent
                exec(compile(block, f"{doc.name} python block", "exec"), {})
                ran += 1
    assert ran > 0, f"{doc} has no command block"


def test_set_up_lines_are_the_only_ones_left_out():
    block = "make demo   # x\npip install -e .\n# a comment\ndecur pretrain --output runs/demo   # 1. y\n"
    assert commands(block) == ["decur pretrain --output runs/demo"]
    assert [lang for lang, _ in command_blocks(REPO / "README.md")].count("bash") >= 4
