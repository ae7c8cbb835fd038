"""The package's layers (pyproject.toml, ``[tool.importlinter]``): every import, inside functions too, goes down."""

from __future__ import annotations

import grimp
import pytest

from .conftest import REPO


def test_every_import_goes_down_the_layers(monkeypatch, capsys):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(REPO)
    assert lint_imports(no_cache=True, no_logo=True) == 0, capsys.readouterr().out[-3000:]


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("decur.weights.export", "decur.runfiles"),  # run-folder helpers: their own module, not the training's
        ("decur.evaluate.convergence", "decur.evaluate.metrics"),  # alignment: evaluation, not explain
    ],
)
def test_the_cycles_that_were_broken_stay_broken(importer, imported):
    graph = grimp.build_graph("decur")
    assert imported in graph.find_modules_directly_imported_by(importer)
    assert not graph.find_shortest_chain(imported, importer)  # no way back up


def test_models_import_nothing_of_the_weights_layer():
    """The joint encoder's constructors from weights live in ``decur.weights.joint.MultimodalEncoder`` (a subclass),
    so no import goes up: not even inside a function."""
    graph = grimp.build_graph("decur")
    up = {(a, b) for a in graph.find_children("decur.models") | {"decur.models"}
          for b in graph.find_modules_directly_imported_by(a) if b.startswith("decur.weights")}  # fmt: skip
    assert up == set()


def test_function_level_imports_are_seen():
    """grimp reads imports inside functions: `decur.cli` imports `decur.train.run` only inside `_pretrain`."""
    graph = grimp.build_graph("decur")
    assert "decur.train.run" in graph.find_modules_directly_imported_by("decur.cli")
