"""Bad configs fail fast, naming the field; shipped configs validate."""

from __future__ import annotations

import re

import pytest

from decur.cli import main
from decur.config import ConfigError, load_config

from .conftest import REPO


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["data.modalities=[{name: lidar, bands: 1}, {name: sar, bands: 2}]"], "data.modalities"),
        (["method.common_dim=2000"], "method.common_dim"),
        (["data.batch_size=1"], "data.batch_size"),
        (["data.dataset=ssl4eo_s12", "data.root=/nonexistent/ssl4eo"], "data.root"),
        (["data.dataset=geonrw"], "data.root"),
        (["method.name=mae"], "method.name"),
        (["method.name=barlow_twins_single"], "data.modalities"),
        (["method.separation=-1"], "method.separation"),
        (["method.name=barlow_twins_cross", "method.separation=1.0"], "method.separation"),
        (["data.modalities=[{name: optical, bands: 13, augment: fancy}, {name: sar, bands: 2}]"], "augment"),
        (["data.modalities=[{name: optical, bands: 13, mean: [0.1]}, {name: sar, bands: 2}]"], "mean"),
        (["trainer.precision=8-bit"], "trainer.precision"),
        (["data.crop_scale=[0.5, 0.2]"], "data.crop_scale"),
    ],
)
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, overrides).validate()


def test_unknown_and_mistyped_fields():
    with pytest.raises(ConfigError, match=r"`trainer\.epochs` is unknown"):
        load_config(None, ["trainer.epochs=3"])
    with pytest.raises(ConfigError, match=r"`data\.batch_size`: expected int"):
        load_config(None, ["data.batch_size=many"])
    with pytest.raises(ConfigError, match=r"section\.field=value"):
        load_config(None, ["batch_size"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no/such/config.yaml")


def test_common_dim_from_share_and_explicit():
    cfg = load_config(None, ["model.projector=[64, 64]", "method.common_share=0.875"]).validate()
    assert cfg.common_dim == 56
    cfg = load_config(None, ["method.common_dim=0"]).validate()
    assert cfg.common_dim == 0


def test_shipped_configs_validate():
    """Every shipped config is detected as the kind its name says and passes that kind's ``validate`` (each study's
    ``validate`` checks every pretraining run it would start)."""
    from decur.config import detect_kind, load_any

    expected = {"experiment.yaml": "experiment", "convergence.yaml": "convergence", "split_study.yaml": "split"}
    for path in sorted((REPO / "configs").glob("*.yaml")):
        kind = detect_kind(path)
        if path.name.startswith("transfer_"):
            assert kind == "transfer", path
        elif path.name.startswith("sweep_"):
            assert kind == "sweep", path
        else:
            assert kind == expected.get(path.name, "pretrain"), path
        load_any(path, kind)[1].validate(check_paths=False)


def test_cli_reports_bad_config_with_exit_code_2(capsys, tmp_path):
    code = main(["pretrain", "--output", str(tmp_path), "method.common_dim=99999"])
    assert code == 2
    err = capsys.readouterr().err
    assert "method.common_dim" in err and "0..1024" in err


def test_overrides_may_follow_the_options_on_the_command_line(capsys):
    from decur.cli import build_parser, parse

    args = parse(build_parser(), ["pretrain", "a.b=1", "--output", "runs/x", "c.d=2", "a.b=3"])
    assert args.output == "runs/x" and args.overrides == ["a.b=1", "c.d=2", "a.b=3"]  # later ones win
    with pytest.raises(SystemExit):
        parse(build_parser(), ["pretrain", "--output", "runs/x", "--bogus", "c.d=2"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(build_parser(), ["export", "runs/x", "--out", "w", "a=1"])  # export takes no overrides


def test_the_command_line_starts_without_the_training_stack():
    """`decur --help` (and every command before it reaches its work) imports neither Lightning nor the training
    module: they cost ~7 s of start-up on 2 cores, paid only by the commands that train or evaluate."""
    import subprocess
    import sys

    code = (
        "import sys; from decur.cli import main\n"
        "try: main(['--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('lightning', 'decur.train.module') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


BAD_NUMBERS = [
    ("optim.lr_weights", ["-0.2", "0"]), ("optim.lr_biases", ["-0.001"]), ("optim.adamw_lr", ["0", "-1"]),
    ("optim.momentum", ["1.0", "-0.1"]), ("optim.weight_decay", ["-0.000001"]), ("optim.adamw_weight_decay", ["-0.01"]),
    ("optim.warmup_epochs", ["-1", "-0.5"]), ("trainer.log_every_n_steps", ["0", "-5"]), ("trainer.rank_every", ["0"]),
    ("trainer.num_nodes", ["0"]), ("trainer.seed", ["-1"]), ("data.length", ["0", "1000000000000"]),
    ("data.num_workers", ["-1"]), ("data.image_size", ["32"]),
]  # fmt: skip


@pytest.mark.parametrize(("field", "values"), BAD_NUMBERS)
def test_every_number_out_of_its_range_is_refused_naming_its_field(field, values):
    from decur.config import ConfigError, load_config

    for value in values:
        with pytest.raises(ConfigError, match=rf"^config field `{re.escape(field)}`: must be .*, got "):
            load_config(None, [f"{field}={value}"]).validate(check_paths=False)


def test_the_edges_of_the_ranges_are_accepted():
    from decur.config import load_config

    edges = ["optim.lr_biases=0", "optim.momentum=0", "optim.weight_decay=0", "optim.warmup_epochs=6",
             "trainer.log_every_n_steps=1", "trainer.seed=0", "data.length=1", "data.num_workers=0",
             "data.image_size=56"]  # fmt: skip
    load_config(None, edges).validate(check_paths=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", -0.1), ("lr", 0.0), ("weight_decay", -0.01), ("num_workers", -1), ("warmup_epochs", -1.0),
     ("train_samples", 0), ("test_samples", 0), ("image_size", 4), ("epochs", 0), ("batch_size", 0)],
)  # fmt: skip
def test_every_transfer_number_out_of_its_range_is_refused_naming_its_field(field, value):
    from decur.evaluate.transfer import TransferConfig

    with pytest.raises(ConfigError, match=rf"^transfer config field `{field}`: must be"):
        TransferConfig(**{field: value}).validate(check_paths=False)
    TransferConfig(lr=0.01, weight_decay=0.0, num_workers=0, warmup_epochs=0.0).validate(check_paths=False)


@pytest.mark.parametrize(
    ("field", "bad", "choices"),
    [
        ("optim.name", "sgd", "['lars', 'adamw']"),
        ("trainer.precision", "bf16", "['32-true', '32', 'bf16-mixed', '16-mixed']"),
        ("method.pairs", "max", "['sum', 'mean']"),
        ("trainer.sync_batchnorm", "some", "['all', 'projector', 'none']"),
    ],
)
def test_every_enumeration_is_refused_the_same_way_from_yaml_and_from_python(field, bad, choices):
    """One rule for every ``Literal`` field: the loader refuses a value read from YAML / overrides, and
    ``validate()`` refuses one set in Python, both naming the field and the choices."""
    from decur.config import ConfigError, load_config

    expected = f"config field `{field}`: '{bad}' is not one of {choices}"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{field}={bad}"])
    assert str(err.value) == expected
    cfg = load_config(None)
    section, name = field.split(".")
    setattr(getattr(cfg, section), name, bad)
    with pytest.raises(ConfigError) as err:
        cfg.validate(check_paths=False)
    assert str(err.value) == expected


def test_a_modality_augment_preset_outside_the_list_is_named_with_its_index():
    from decur.config import ConfigError, load_config

    cfg = load_config(None)
    cfg.data.modalities[1].augment = "radar"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"`data\.modalities\[1\]\.augment`: 'radar' is not one of \['optical'"):
        cfg.validate(check_paths=False)
