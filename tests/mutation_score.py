"""The mutation score a tool measures: mutmut 3 mutates every function of the named modules, one mutant at a time.

    python -m tests.mutation_score                 # every module below (make mutation-score)
    python -m tests.mutation_score losses metrics  # the modules whose name contains one of the words

Hand-written mutants (``tests/mutants.py``) find what their author already thought of; mutmut's operators (every
comparison, constant, argument, default, string and boolean flipped) find what nobody did. Each module is mutated
in its own copy of the committed repository (``git archive HEAD``) under ``$DECUR_MUTATION_DIR`` (default
``/tmp/decur-mutation``), with the test files that exercise it (mutmut then runs, per mutant, only the tests that
call the mutated function, fastest first, and stops at the first failure).

A survivor is either a blind spot of the tests or an *equivalent* mutant — one no test can tell apart because the
behaviour is the same (a faster path chosen by a size test, a default no caller relies on). Equivalent ones are
listed in :data:`EQUIVALENT` with a one-line reason and left out of the score; every other survivor is printed.
The table (module, mutants, killed, equivalent, survived, score, minutes) goes to stdout and to
``$DECUR_MUTATION_DIR/table.md``; the exit status is 1 when a module scores below :data:`TARGET`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.9
"""Share of non-equivalent mutants each module's tests must kill."""

SLOW_WEIGHTS = [
    "--deselect=tests/test_weights.py::test_transfer_starts_from_the_release_checkpoint_with_its_transform",
    "--deselect=tests/test_weights.py::test_a_release_transform_on_a_packed_store_is_refused_before_training",
]
"""Two transfers of 15 s each: every surviving mutant would run them; their claims have known-answer tests."""
KNOWN = "tests/test_known_answers.py"
MODULES: dict[str, tuple[str, list[str]]] = {
    # the weights layer in four runs (about 1,700 mutants together: one run does not fit a session on 2 cores)
    "weights/formats": ("src/decur/weights/formats.py", [KNOWN, "tests/test_weights.py", *SLOW_WEIGHTS]),
    "weights/inputs": (
        " ".join(f"src/decur/weights/{f}.py" for f in ("inputs", "torchgeo", "joint")),
        [KNOWN, "tests/test_weights.py", "tests/test_hub.py", *SLOW_WEIGHTS],
    ),
    "weights/terratorch": ("src/decur/weights/terratorch.py", [KNOWN, "tests/test_terratorch.py"]),
    "weights/export": (
        " ".join(f"src/decur/weights/{f}.py" for f in ("export", "hub", "__init__")),
        [KNOWN, "tests/test_weights.py", "tests/test_export.py", "tests/test_hub.py", *SLOW_WEIGHTS],
    ),
    "transforms": ("src/decur/data/transforms.py", [KNOWN, "tests/test_weights.py", *SLOW_WEIGHTS]),
    "joint": ("src/decur/models/joint.py", [KNOWN]),
    "heads": ("src/decur/models/heads.py", [KNOWN, "tests/test_heads.py"]),
    "losses": ("src/decur/losses.py", ["tests/test_losses.py"]),
    "datasets": (
        "src/decur/datasets.py",
        [
            "tests/test_datasets.py",
            "tests/test_config.py",
            "tests/test_bad_input.py",
            "tests/test_download.py",
            "--deselect=tests/test_download.py::test_every_dataset_page_has_a_get_the_data_section_naming_its_command",
        ],  # (the docs are not in the mutants' tree)
    ),
    "download": (
        "src/decur/data/download.py",
        [
            "tests/test_download_torchgeo.py",
            "tests/test_download.py",
            "--deselect=tests/test_download.py::test_every_dataset_page_has_a_get_the_data_section_naming_its_command",
        ],
    ),
    "split": ("src/decur/train/split.py", ["tests/test_split.py"]),
    "methods": ("src/decur/methods.py", ["tests/test_methods.py"]),
    "metrics": (
        "src/decur/evaluate/metrics.py",
        [KNOWN]
        + [
            f"tests/test_transfer.py::test_{t}"
            for t in (
                "label_subsets_take_exactly_round_fraction_n_without_replacement",
                "segmentation_scores_hand_computed_absent_class_and_ignored_pixels",
                "segmentation_scores_do_not_depend_on_batching",
                "the_ignore_class_is_never_predicted",
                "classification_metrics_are_dataset_level_and_hand_computed",
            )
        ],
    ),
    "retrieval": (
        "src/decur/evaluate/retrieval.py",
        [
            KNOWN,
            "tests/test_multimodal.py::test_retrieval_ranks_on_hand_built_sets",
            "tests/test_multimodal.py::test_common_slice_retrieval_scores_the_common_dims_only",
        ],
    ),
    "ssl4eo_v11": ("src/decur/data/ssl4eo_v11.py", [KNOWN, "tests/test_ssl4eo_v11.py"]),
    "ssl4eo_s12": (
        "src/decur/data/ssl4eo_s12.py",
        ["tests/test_ssl4eo_s12.py"]
        + [
            f"--deselect=tests/test_ssl4eo_s12.py::test_{t}"
            for t in (  # whole pretraining runs (5-15 s each, run for every survivor); the reader's claims have
                # their own tests in the file
                "a_run_resumes_on_its_data_moved_but_not_on_other_data",
                "pretrain_runs_on_fixture",
                "pretrain_runs_on_real_pixels",
                "the_paper_config_runs_unchanged_on_a_cpu_and_says_how_its_4_devices_were_mapped",
                "the_shipped_vit_s16_config_pretrains_on_the_release_layout",
            )
        ],
    ),
}
"""Name → (the files mutated, space-separated patterns; the test files that exercise them)."""

EQUIVALENT: dict[str, str] = {
    # losses: the Gram and the K x K forms of the correlation moments give the same numbers (a test checks both);
    # the size rule only picks the faster one
    "decur.datasets.x_resolve__mutmut_4": "a factory path holds one ':', partition and rpartition agree",
    "decur.losses.x_correlation_moments__mutmut_5": "the size rule picks the faster of two equal forms",
    "decur.losses.x_correlation_moments__mutmut_6": "the size rule picks the faster of two equal forms",
    "decur.losses.x_correlation_moments__mutmut_7": "the size rule picks the faster of two equal forms",
    "decur.losses.x_correlation_moments__mutmut_8": "the size rule picks the faster of two equal forms",
    "decur.losses.x_correlation_moments__mutmut_9": "the size rule picks the faster of two equal forms",
    "decur.losses.x_correlation_moments__mutmut_10": "the size rule picks the faster of two equal forms",
    "decur.losses.x_correlation_moments__mutmut_19": "CPU autocast leaves this float32 product in float32",
    "decur.losses.x_correlation_moments__mutmut_20": "CPU autocast leaves this float32 product in float32",
    **dict.fromkeys(
        [f"decur.losses.x_decur_loss__mutmut_{i}" for i in (55, 62, 66, 73)]
        + [f"decur.losses.x_decur_multimodal__mutmut_{i}" for i in (92, 102)],
        "the guard only skips an empty block, whose objective is 0 anyway",
    ),
    "decur.losses.x_decur_multimodal__mutmut_77": "a zero of another modality's (equal) dtype and device",
    "decur.losses.x_decur_without_intra__mutmut_6": "intra=None is as false as intra=False",
    "decur.losses.x_decur_without_decoupling__mutmut_6": "decouple=None is as false as decouple=False",
    **dict.fromkeys(
        [
            f"decur.losses.x_{f}__mutmut_1"
            for f in ("barlow_twins_cross", "barlow_twins_single", "simclr_cross", "clip_loss", "vicreg_cross")
        ],
        "the baselines take common_dim for a uniform signature and do not use it",
    ),
    **dict.fromkeys(
        [
            "decur.losses.x_simclr_cross__mutmut_11",
            "decur.losses.x_clip_loss__mutmut_10",
            "decur.losses.x_clip_loss__mutmut_18",
        ],
        "F.normalize's default dim is 1",
    ),
    **dict.fromkeys(
        [f"decur.losses.x_simclr_cross__mutmut_{i}" for i in (30, 33, 40)]
        + [f"decur.losses.x_clip_loss__mutmut_{i}" for i in (26, 28)],
        "device dropped: the same on the CPU; on a GPU a device-mismatch error, never a wrong value",
    ),
    "decur.losses.x_simclr_cross__mutmut_38": 'float("-INF") is float("-inf")',
    "decur.losses.x_simclr_cross__mutmut_50": "torch.arange(0, n) is torch.arange(n)",
    **dict.fromkeys(
        [f"decur.evaluate.retrieval.x__standardized__mutmut_{i}" for i in (15, 17)],
        "population or sample std scales every dimension alike: the cosine does not change",
    ),
    "decur.evaluate.retrieval.x__standardized__mutmut_11": "an epsilon of 1e-8 added or subtracted (std >> 1e-8)",
    "decur.evaluate.retrieval.x__standardized__mutmut_9": "F.normalize's default dim is 1",
    **dict.fromkeys(
        [f"decur.evaluate.metrics.xǁSegmentationScoresǁ__init____mutmut_{i}" for i in (12, 15)],
        "float or int64 zeros: the scores are computed in float64 from the same counts",
    ),
    "decur.evaluate.metrics.x_scores_from_confusion__mutmut_12": "the confusion matrix is square",
    "decur.models.joint.xǁMultimodalEncoderǁfrom_export__mutmut_8": "dataset_bands=None is the default",
    **dict.fromkeys(
        [f"decur.models.joint.xǁMultimodalEncoderǁfrom_export__mutmut_{i}" for i in (27, 31, 32, 33)],
        "the caller's name, used in messages of a failure from_export catches",
    ),
    "decur.evaluate.metrics.x_predict_classes__mutmut_11": 'float("-INF") is float("-inf")',
    **dict.fromkeys(
        [f"decur.models.heads.x_feature_encoder__mutmut_{i}" for i in (16, 21, 30)],
        "timm's pretrained and torch's strict: False, None and the default False act alike",
    ),
    **dict.fromkeys(
        [f"decur.methods.xǁObjectiveǁ_multimodal__mutmut_{i}" for i in (10, 12)],
        "decur's and Barlow Twins' keyword sets always hold lambda_common / lambda_offdiag: the default is unused",
    ),
    **dict.fromkeys(
        [f"decur.methods.xǁObjectiveǁ_multimodal__mutmut_{i}" for i in (72, 74, 80, 82)],
        "bool(None) is bool(False): an absent switch stays off",
    ),
    "decur.methods.xǁObjectiveǁ__init____mutmut_10": "two modalities cut to their first two are the same list",
    "decur.methods.xǁObjectiveǁforward__mutmut_8": "barlow_twins_single's loss takes but never reads the second views",
    "decur.methods.xǁObjectiveǁforward__mutmut_9": "of two modalities, index +1 is index -1",
    **dict.fromkeys(
        [f"decur.data.transforms.xǁInputTransformǁfill_value__mutmut_{i}" for i in (15, 17, 24, 25, 28, 29)],
        "a constant image: every pixel, any size and float32 or the default dtype give the same fill value",
    ),
    **dict.fromkeys(
        [f"decur.data.transforms.x__percentile_stretch__mutmut_{i}" for i in (14, 24)],
        "the flattened image is C x HW: dim +1 is dim -1",
    ),
    **dict.fromkeys(
        [f"decur.data.transforms.x__per_band__mutmut_{i}" for i in (7, 9)],
        "the device argument: the same on the CPU; on a GPU a device-mismatch error, never a wrong value",
    ),
    **dict.fromkeys(
        [f"decur.data.transforms.x__per_band__mutmut_{i}" for i in (18, 20)],
        "statistics built in float32 instead of float64, then cast to the image's float32: the same values",
    ),
    "decur.data.transforms.x_image_transform__mutmut_54": "an error message's words in lower case",
    **dict.fromkeys(
        [f"decur.data.ssl4eo_s12.x__closest_subsequence__mutmut_{i}" for i in (5, 9, 12, 15, 17, 27, 39)],
        "the date-pairing DP: a larger table, a loop one further over cells never read, a constant on every complete "
        "path or float('INF'): the same pairing",
    ),
    **dict.fromkeys(
        [f"decur.data.ssl4eo_s12.x_acquisition_date__mutmut_{i}" for i in (4, 20, 21, 23, 24, 25)],
        "the inner ValueError's text is never shown; the message's words in XX or another case",
    ),
    "decur.data.ssl4eo_s12.x_pair_by_date__mutmut_8": "equal lengths: pairing a with b or b with a is the same",
    **dict.fromkeys(
        [f"decur.data.ssl4eo_s12.xǁSSL4EOS12ǁ__getitem____mutmut_{i}" for i in (11, 21)],
        "torch.randint(n, size) is torch.randint(0, n, size)",
    ),
    "decur.data.ssl4eo_s12.xǁSSL4EOS12ǁ__init____mutmut_22": "skip_bad=None is as false as skip_bad=False",
    "decur.data.ssl4eo_s12.xǁSSL4EOS12ǁ__init____mutmut_63": "skipped starts empty: += and = give the same list",
    "decur.models.heads.x_feature_encoder__mutmut_40": "the message lists the first three or four missing keys",
    "decur.models.heads.x_pyramid__mutmut_14": "no encoder decur builds has one of blocks / patch_embed without both",
    **dict.fromkeys(
        ["decur.models.heads.x_pyramid__mutmut_37", "decur.models.heads.xǁFCNǁforward__mutmut_4"],
        "images are N x C x H x W: shape[2:] is shape[-2:]",
    ),
    **dict.fromkeys(
        [f"decur.models.joint.xǁMultimodalEncoderǁout_channels__mutmut_{i}" for i in (24, 31, 42)],
        "the probe's batch and side (64 or 65 px, a multiple of no patch) give the same channel counts",
    ),
    **dict.fromkeys(
        [f"decur.weights.formats.x__shift__mutmut_{i}" for i in (6, 7, 9)],
        "projector keys have one dot (<layer>.<parameter>): split, rsplit and any maxsplit >= 1 agree",
    ),
    **dict.fromkeys(
        [f"decur.weights.formats.x_sha256__mutmut_{i}" for i in (10, 12, 13)],
        "the chunk size (whole file, 2 MiB, 1 MiB) does not change the digest",
    ),
}
"""Mutant name → why no test can tell it apart from the original (besides :func:`_equivalent_by_rule`)."""


def _equivalent_by_rule(diff: str) -> bool:
    """Two kinds of mutant no test can see, recognised from the diff.

    - an error message's text wrapped in ``XX``: tests match the message's words, which stay;
    - ``zip(..., strict=True)`` made lenient: decur zips lists built to equal length, so the check never fires.
    """
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if len(removed) != 1 or len(added) != 1 or added[0] == removed[0]:
        return False
    if "raise" in removed[0] and added[0].replace("XX", "") == removed[0]:
        return True
    if "cast(" in removed[0] and re.sub(r"cast\(None,", "cast(Any,", added[0]) == removed[0]:
        return True  # typing.cast returns its value unchanged at run time

    def lenient(line: str) -> str:
        return re.sub(r",\s*\)", ")", re.sub(r",?\s*strict=(True|False|None)", "", line))

    return "strict=True" in removed[0] and lenient(added[0]) == lenient(removed[0])


def _copy(workdir: Path) -> str:
    """The committed tree (``HEAD``) into ``workdir``: the score belongs to a commit, not to edits in progress."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def _configure(workdir: Path, pattern: str, tests: list[str]) -> None:
    pyproject = workdir / "pyproject.toml"
    text = pyproject.read_text().split("\n[tool.mutmut]")[0]
    settings = {
        "source_paths": ["src/decur"],
        "only_mutate": pattern.split(),
        "also_copy": ["configs"],
        "process_isolation": "forkserver",
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-W", "ignore"],
        "pytest_add_cli_args_test_selection": tests,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    pyproject.write_text(text.rstrip() + "\n\n[tool.mutmut]\n" + "\n".join(lines) + "\n")


def _results(workdir: Path) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for meta in (workdir / "mutants").rglob("*.meta"):
        out.update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def _show(workdir: Path, mutant: str) -> str:
    return subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=workdir, capture_output=True,
                          text=True).stdout  # fmt: skip


def _score(name: str, workdir: Path, minutes: float) -> tuple[list[object], list[str]]:
    codes = _results(workdir)
    killed = sum(1 for c in codes.values() if c in (1, 3, 36, 24, -24, 152, 255))  # a timeout is a kill too
    alive = [k for k, c in codes.items() if c == 0]
    equivalent = [k for k in alive if k in EQUIVALENT or _equivalent_by_rule(_show(workdir, k))]
    survivors = sorted(set(alive) - set(equivalent))
    unchecked = len(codes) - killed - len(equivalent) - len(survivors)  # no test reaches them: not killed either
    counted = killed + len(survivors) + unchecked
    score = killed / counted if counted else float("nan")
    row = [name, len(codes), killed, len(equivalent), len(survivors), unchecked, f"{score:.1%}", f"{minutes:.1f}"]
    return row, survivors


def _diff(workdir: Path, mutant: str) -> str:
    shown = _show(workdir, mutant)
    return " | ".join(line[1:].strip() for line in shown.splitlines() if line[:1] in "+-" and line[:3] not in "+++---")


def main(words: list[str]) -> int:
    """Run mutmut on the chosen modules and print the table and the survivors."""
    root = Path(os.environ.get("DECUR_MUTATION_DIR", "/tmp/decur-mutation"))
    env = dict(os.environ, DECUR_REAL_DATA=str(REPO.parent / "shared" / "data" / "real"))
    chosen = [m for m in MODULES if not words or any(w in m for w in words)]
    header = [
        "module",
        "mutants",
        "killed",
        "equivalent",
        "survived",
        "no test",
        "score",
        "minutes (2 cores)",
        "commit",
    ]
    rows, failed = [], False
    for name in chosen:
        pattern, tests = MODULES[name]
        workdir = root / name.replace("/", "-")
        commit = _copy(workdir)
        _configure(workdir, pattern, tests)
        start = time.perf_counter()
        with (workdir / "mutmut.log").open("w") as log:
            subprocess.run([str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(os.cpu_count())],
                           cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        row, survivors = _score(name, workdir, (time.perf_counter() - start) / 60)
        row.append(commit)
        rows.append(row)
        print(" | ".join(map(str, row)), flush=True)
        for mutant in survivors:
            print(f"  survived {mutant}: {_diff(workdir, mutant)[:200]}", flush=True)
        failed |= row[6] == "nan%" or float(str(row[6]).rstrip("%")) < TARGET * 100
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    (root / "table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
