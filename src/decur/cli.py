"""The ``decur`` command line.

Each command imports what it runs inside its function: ``decur --help`` and ``decur validate`` start without torch,
Lightning or the readers (``tests/test_catalog.py``), and a command pays only for its own stack.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import decur.embed
import decur.evaluate  # noqa: F401  (registers the config kinds of transfer and the studies; imports no torch)
from decur.config import ConfigError, load_config, load_dataclass
from decur.datasets import dataset_spec, datasets


def _pretrain(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    cfg.validate()
    output = Path(args.output) if args.output else Path("runs") / f"{cfg.method.name}-{cfg.data.dataset}"
    from decur.train.run import pretrain

    summary = pretrain(cfg, output)
    if summary["rank"] == 0 and cfg.eval.enabled and dataset_spec(cfg.data.dataset).generated:
        from decur.evaluate.probe import evaluate_run, format_summary

        summary = evaluate_run(output)
        print(f"\nEvaluation (linear probes on frozen encoders, {cfg.eval.test_samples} test scenes)\n")
        print(format_summary(summary))
    print(f"run folder: {output}  (summary.json, metrics.csv, loss.png, config.yaml, checkpoints/)")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from decur.config import load_any

    failed = 0
    paths: list[str] = []
    for given in args.configs:  # a folder stands for the YAML files in it
        folder = Path(given)
        found = sorted(str(p) for p in folder.glob("*.y*ml")) if folder.is_dir() else [given]
        if not found:
            print(f"{given}: FAILED: a folder without .yaml files; give config files or a folder holding them")
            failed += 1
        paths += found
    for path in paths:
        try:
            kind, cfg = load_any(path, args.kind)
            cfg.validate(check_paths=args.check_paths)
        except ConfigError as err:
            failed += 1
            print(f"{path}: FAILED: {err}")
            continue
        what = (
            f", {cfg.method.name}, {cfg.model.arch}, K={cfg.embed_dim}, "
            f"K_c={'auto' if cfg.method.common_dim == 'auto' else cfg.common_dim}"
            if kind == "pretrain"
            else ""
        )
        print(f"{path}: ok ({kind}{what})")
    if failed:
        print(f"{failed} of {len(paths) or len(args.configs)} config(s) failed", file=sys.stderr)
    return 2 if failed else 0


def _data_check(args: argparse.Namespace) -> int:
    from decur.data.check import check

    report = check(args.dataset, Path(args.root), args.split, args.s2_product, args.size, args.quick)
    print(report.format())
    return 1 if report.problems else 0


def _data_pack(args: argparse.Namespace) -> int:
    from decur.datasets import resolve

    pack = dataset_spec(args.dataset).pack
    assert pack is not None  # the parser offers datasets("pack") only
    out, usage = resolve(pack)(args.root, args.out, {"dataset": args.dataset, **vars(args)})
    print(f"packed store: {out}  ({usage})")
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from decur.data.build import build_dataset
    from decur.data.paired import PairedFolders, compute_stats

    cfg = load_config(args.config, args.overrides).validate()
    dataset = build_dataset(cfg)
    if not isinstance(dataset, PairedFolders):
        raise ConfigError("config field `data.dataset`: `decur data stats` is for paired_folders datasets")
    stats = compute_stats(dataset)
    for m, s in stats.items():
        print(f"{m}: mean {[round(v, 4) for v in s['mean']]}  std {[round(v, 4) for v in s['std']]}")
    print(f"cached in {dataset.root / '.decur-stats.json'} ({len(dataset)} samples)")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from decur.data.download import describe
    from decur.datasets import resolve

    fetch = dataset_spec(args.dataset).fetch
    if fetch is None:
        print(describe(args.dataset, Path(args.root)))
        return 2
    return int(resolve(fetch)(Path(args.root), vars(args)))


def _data_hha(args: argparse.Namespace) -> int:
    import numpy as np

    from decur.data.rgbd import convert_folder_to_hha

    camera = None
    if args.camera:
        fx, fy, cx, cy = args.camera
        camera = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    written = convert_folder_to_hha(args.src, args.dst, args.encoding, camera, args.intrinsics, args.max_depth)
    print(f"wrote {len(written)} HHA image(s) to {args.dst}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from decur.weights import export_backbone, read_run, write_export

    if args.hub:
        from decur.weights import read_pretrained
        from decur.weights.hub import write_hub

        folder = write_hub(read_pretrained(args.run), args.hub, overwrite=args.overwrite)
        print(f"wrote {folder}/ (model.safetensors + .pth, config.json, README.md): push it as a Hub model repository")
        return 0
    if args.out is None:
        raise ConfigError("decur export: give --out (an export folder) or --hub (a Hub model folder)")
    if args.modality is None:
        card = write_export(read_run(Path(args.run)), args.out, overwrite=args.overwrite)
        print(f"wrote {card.parent}/ (card.json, one .safetensors + .pth per modality)")
        return 0
    weights, card = export_backbone(args.run, args.modality, args.out, args.overwrite)
    print(f"wrote {weights} and {card}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from decur.weights import import_weights

    if args.list:
        from decur.weights.hub import listing

        print(listing())
        return 0
    if args.file is None or args.out is None:
        raise ConfigError("decur import: give the weights (a file, folder or name) and --out DIR, or --list")

    modalities = args.modalities.split(",") if args.modalities else None
    card, pre = import_weights(args.file, args.out, modalities, args.input_transform, args.overwrite)
    for m in pre.modalities:
        t = pre.transforms[m]
        print(
            f"{m}: {pre.arch}, {pre.bands[m]} bands ({t.units}), input transform {t.rule}: "
            f"{' -> '.join(s['op'] for s in t.steps)}"
        )
    print(f"wrote {card.parent}/ (card.json, one .safetensors + .pth per modality)")
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from decur.evaluate.transfer import TransferConfig, run_transfer

    run = load_dataclass(TransferConfig, args.config, args.overrides).validate()
    output = Path(args.output) if args.output else Path("runs") / "transfer"
    summary = run_transfer(run, output)
    if summary["runs"][0].get("rank", 0) != 0:
        return 0
    if run.task == "retrieval":
        from decur.evaluate.retrieval import format_retrieval

        print(format_retrieval(summary["retrieval"]))
        print(f"results: {output / 'results.json'}")
        return 0
    mods = run.modalities or "all modalities"
    print(
        f"{run.task}, {summary['protocol']} ({summary['setting']}), {run.label_fraction:.0%} labels, {mods}, "
        f"{len(summary['runs'])} seed(s):"
    )
    for key, value in summary.items():
        if isinstance(value, dict) and "mean" in value:
            print(f"  {key:<15} {value['mean']:.3f} ± {value['std']:.3f}")
    print(f"results: {output / 'results.json'}  (one run folder per seed: {output}/seed<k>/)")
    return 0


STUDIES = {
    "experiment": ("decur.evaluate.experiment", "ExperimentConfig", "run_experiment", "results.md"),
    "sweep": ("decur.evaluate.experiment", "SweepConfig", "run_sweep", "sweep.md"),
    "convergence": ("decur.evaluate.convergence", "ConvergenceConfig", "run_convergence", "summary.md"),
    "split": ("decur.evaluate.split_study", "SplitStudyConfig", "run_split_study", "split.md"),
}
"""The studies on the synthetic data: module, config class, runner, and the report printed at the end."""


def _study(args: argparse.Namespace) -> int:
    import importlib

    module, config, runner, report = STUDIES[args.command]
    mod = importlib.import_module(module)
    cfg = load_dataclass(getattr(mod, config), args.config, args.overrides)
    getattr(mod, runner)(cfg, Path(args.output))
    print((Path(args.output) / report).read_text())
    return 0


def _explain(args: argparse.Namespace) -> int:
    from decur.explain import ExplainConfig, explain

    options = ExplainConfig(
        samples=args.samples,
        batch_size=args.batch_size,
        alignment_batches=args.alignment_batches,
        standardize=not args.raw_outputs,
        cam_relu=args.cam_relu,
        ig_steps=args.ig_steps,
        accelerator=args.accelerator,
    )
    numbers = explain(args.run, args.out, args.compare, options)
    a = numbers["alignment"]
    means = {k: "-" if a[f"{k}_mean"] is None else f"{a[f'{k}_mean']:.3f}" for k in ("common", "unique")}
    print(f"mean misalignment (1 - C_ii)^2: common {means['common']}, unique {means['unique']}")
    for note in numbers["notes"]:
        print(f"note: {note}")
    print(f"report: {Path(args.out) / 'report.md'} ({numbers['seconds']} s)")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from decur.embed import EmbedConfig

    cfg = load_dataclass(EmbedConfig, args.config, args.overrides)
    cfg.source = args.source
    cfg.validate()
    from decur.embed.run import embed

    summary = embed(cfg, args.out, overwrite=args.overwrite)
    if summary["rank"] == 0:
        resumed = f" ({summary['resumed']} from the unfinished run)" if summary["resumed"] else ""
        print(f"wrote {summary['rows']} rows{resumed} to {summary['out']} in {summary['seconds']} s")
    return 0


def _search(args: argparse.Namespace) -> int:
    from decur.embed.search import Embeddings, partner_ranks, partner_summary, quicklook, search

    if args.evaluate:
        emb = Embeddings(args.embeddings)
        mods = emb.modalities
        src, dst = args.modality_from or mods[0], args.modality_to or mods[-1]
        s = partner_summary(partner_ranks(emb, args.space, src, dst, args.raw))
        print(
            f"{src} -> {dst}, {args.space} space, {int(s['queries'])} queries: recall@1 {s['recall@1']:.3f} "
            f"(chance {s['random_recall@1']:.3f}), recall@10 {s['recall@10']:.3f} (chance "
            f"{s['random_recall@10']:.3f}), median rank {s['median_rank']:.0f} (chance {s['random_median_rank']:.0f})"
        )
        return 0
    if args.query is None:
        raise ConfigError("decur search: give --query ID (a sample id of the file) or --evaluate")
    emb, hits = search(args.embeddings, args.query, args.space, args.modality_from, args.modality_to, args.k + 1,
                       args.raw)  # fmt: skip
    src = args.modality_from or emb.modalities[0]
    dst = args.modality_to or (emb.modalities[1] if len(emb.modalities) > 1 and args.space != "feature" else src)
    if src == dst:  # the query itself is its own best match within one modality: left out
        hits = [h for h in hits if h.id != args.query]
    hits = hits[: args.k]
    for i, h in enumerate(hits, 1):
        h.rank = i
    print(f"query {args.query} ({src}) -> {dst}, {args.space} space, top {len(hits)} of {emb.rows}:")
    for h in hits:
        where = f"  lon {h.centre[0]:.4f} lat {h.centre[1]:.4f}" if h.centre else ""
        print(f"  {h.rank:>3}  {h.score:+.4f}  {h.id}{where}")
    if args.out:
        from decur.embed.search import Hit

        if Path(args.query).is_file():  # an image query: shown from its file
            from decur.data.paired import read_image

            query, image = Hit(0, Path(args.query).name, -1, 1.0, None), read_image(Path(args.query))
        else:
            query, image = Hit(0, *emb.describe([emb.row_of(args.query)])[0][:2], 1.0, None), None
        note = quicklook(emb, query, hits, (src, dst), Path(args.out), image)
        if note:
            print(f"note: {note}")
        print(f"quick-look: {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``decur``: one ``_add_*`` function per group of subcommands."""
    parser = argparse.ArgumentParser(prog="decur", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or DECUR_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_config_commands(sub)
    _add_explain(sub)
    _add_embed(sub)
    _add_weights(sub)
    _add_validate(sub)
    _add_data(sub)
    return parser


CONFIG_COMMANDS = {  # name: (help, config fields, --output help (None: required), overrides example, description)
    "pretrain": (
        "self-supervised pretraining (default: DeCUR on the built-in synthetic dataset)",
        None,
        "run folder (default: runs/<method>-<dataset>)",
        "section.field=value, e.g. trainer.max_epochs=2",
        "Pretrain, then evaluate. Re-running with the same --output resumes an interrupted run.",
    ),
    "transfer": (
        "classification (late fusion) or segmentation (FCN, CMX) on frozen or fine-tuned encoders",
        "decur.evaluate.transfer.TransferConfig",
        "folder for seed<k>/ run folders and results.json (default runs/transfer)",
        "field=value, e.g. protocol=finetune trainer.devices=2",
        "Transfer on the training engine; re-running with the same --output resumes unfinished seeds.",
    ),
    "experiment": (
        "the miniature of the paper's tables on the synthetic data",
        "decur.evaluate.experiment.ExperimentConfig",
        None,
        "field=value, e.g. seeds=[0]",
        None,
    ),
    "sweep": (
        "vary one pretraining parameter (common share, projector dims): probe mAP",
        "decur.evaluate.experiment.SweepConfig",
        None,
        "field=value, e.g. parameter=model.projector",
        None,
    ),
    "convergence": (
        "trajectories of alignment, factor R² and probe mAP over training",
        "decur.evaluate.convergence.ConvergenceConfig",
        None,
        "field=value, e.g. seeds=[0]",
        None,
    ),
    "split": (
        "method.common_dim=auto against the grid search over common shares, on known truths",
        "decur.evaluate.split_study.SplitStudyConfig",
        None,
        "field=value, e.g. seeds=[0]",
        None,
    ),
}
"""The commands that read a config (``--config`` + ``key=value`` overrides): one table instead of five copies."""


def _add_config_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    funcs = {"pretrain": _pretrain, "transfer": _transfer, **dict.fromkeys(STUDIES, _study)}
    for name, (help_, fields, output, example, description) in CONFIG_COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=description)
        p.add_argument(
            "--config",
            help=f"YAML with the fields of {fields}" if fields else "YAML config; fields not given keep their defaults",
        )
        if output is None:
            p.add_argument("--output", required=True)
        else:
            p.add_argument("--output", help=output)
        p.add_argument("overrides", nargs="*", help=example)
        p.set_defaults(func=funcs[name])


def _add_explain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ex = sub.add_parser("explain", help="alignment, t-SNE of dimensions, GradCAM, saliency statistics, IG")
    ex.add_argument("run", help="run folder or checkpoint (two or more modalities)")
    ex.add_argument("--out", required=True)
    ex.add_argument("--compare", help="another run to overlay on the alignment histogram")
    ex.add_argument("--samples", type=int, default=256, help="evaluation set: the saliency statistics cover all")
    ex.add_argument("--batch-size", type=int, default=32, help="images per GradCAM / IG batch (BN(f(x)) over it)")
    ex.add_argument("--alignment-batches", type=int, default=4, help="training-style batches of Fig. 4a / 8")
    ex.add_argument("--raw-outputs", action="store_true", help="not the paper: raw projector output, no BN(f(x))")
    ex.add_argument("--cam-relu", action="store_true", help="not the paper: ReLU on the GradCAM attributions")
    ex.add_argument("--ig-steps", type=int, default=16, help="Integrated-Gradients interpolation steps")
    ex.add_argument("--accelerator", default="auto", help="auto (the GPU when there is one), cpu, gpu, mps")
    ex.set_defaults(func=_explain)


def _add_embed(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    em = sub.add_parser(
        "embed",
        help="every sample's features and common / unique embeddings -> GeoParquet (or zarr), on the engine",
        description="Embed a dataset with pretrained weights. Re-running the same command after a kill continues "
        "where it stopped.",
    )
    em.add_argument("source", help="weights: run folder or checkpoint, export folder, imported weights")
    em.add_argument("--out", required=True, help="the file to write (.parquet; a folder with format=zarr)")
    em.add_argument("--config", help="YAML with the fields of decur.embed.EmbedConfig")
    em.add_argument("--overwrite", action="store_true", help="replace --out (and an unfinished run's parts)")
    em.add_argument("overrides", nargs="*", help="field=value, e.g. dataset=bigearthnet root=DIR split=test")
    em.set_defaults(func=_embed)
    se = sub.add_parser("search", help="nearest samples of a query in a file `decur embed` wrote (exact cosine)")
    se.add_argument("embeddings", help="the .parquet file written by decur embed")
    se.add_argument(
        "--query", help="a sample id of the file, or an image file of --modality-from (in the data's units)"
    )
    se.add_argument("--space", default="common", choices=["common", "unique", "feature", "fused"])
    se.add_argument("--modality-from", help="the query's modality (default: the file's first)")
    se.add_argument("--modality-to", help="the candidates' modality (default: the file's second)")
    se.add_argument("--k", type=_at_least(1), default=10, help="neighbours to show (default 10)")
    se.add_argument("--raw", action="store_true", help="compare raw projector outputs (not standardised)")
    se.add_argument("--out", help="write a quick-look PNG of the query and its neighbours here")
    se.add_argument(
        "--evaluate",
        action="store_true",
        help="every sample as a query: the rank of its own other modality (recall@1, @10, median rank)",
    )
    se.set_defaults(func=_search)


def _add_weights(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("export", help="a run's encoders as plain timm / SegFormer state dicts + a card")
    e.add_argument("run", help="run folder or checkpoint")
    e.add_argument("--modality", help="one modality only: --out FILE.safetensors (+ FILE.json)")
    e.add_argument("--out", help="the export folder (FILE.safetensors with --modality)")
    e.add_argument("--hub", help="write a folder in the Hugging Face Hub's layout instead (model.safetensors, ...)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing export at --out")
    e.set_defaults(func=_export)
    im = sub.add_parser("import", help="published DeCUR weights (release, torchgeo, timm, SegFormer) -> an export")
    im.add_argument(
        "file",
        nargs="?",
        help="weights file or folder, or a name: a release short name (--list), torchgeo:ResNet50_Weights.<NAME>, "
        "hf:ORG/REPO[/FILE][@REVISION]",
    )
    im.add_argument("--out", help="the export folder to write")
    im.add_argument("--list", action="store_true", help="print the weights decur knows by name, and exit")
    im.add_argument("--overwrite", action="store_true", help="replace an existing export at --out")
    im.add_argument("--modalities", help="names of the encoders in file order, e.g. s1,s2 (joint release files)")
    im.add_argument(
        "--input-transform",
        choices=["decur", "ssl4eo_release", "torchgeo"],
        help="the rule the weights were trained with when no card records it",
    )
    im.set_defaults(func=_import)


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = sub.add_parser("validate", help="check config files of any kind without running them (every file, each named)")
    v.add_argument("configs", nargs="+")
    v.add_argument(
        "--kind",
        choices=["pretrain", "transfer", "experiment", "sweep", "convergence", "embed"],
        help="the kind of every file (default: detected from its keys)",
    )
    v.add_argument("--check-paths", action="store_true", help="also check that data folders and files exist")
    v.set_defaults(func=_validate)


def _add_data(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    dl = data.add_parser(
        "download",
        help="a dataset into the layout decur reads, then data check: SSL4EO-S12 v1.1 shards from the Hugging Face "
        "Hub (any number of files); SSL4EO-S12 v1.0, BigEarthNet and GeoNRW through torchgeo's downloaders "
        "(whole archives, hashes checked); for the others, where to get them and the layout",
    )
    dl.add_argument("dataset", choices=datasets("download"))
    dl.add_argument("root", help="target folder")
    dl.add_argument("--split", default="train", choices=["train", "val"], help="the split to fetch (v1.1) or check")
    dl.add_argument("--files", type=_at_least(1), default=1, help="v1.1: shards per product, 64 locations each")
    dl.add_argument(
        "--products",
        help="v1.1: of s1grd,s2l1c,s2l2a,s2rgb (default all four); v1.0: of s1,s2c,s2a (default s1,s2c)",
    )
    dl.add_argument("--source", help="v1.1: a local mirror of the Hub repository instead of the network")
    dl.set_defaults(func=_data_download)
    c = data.add_parser("check", help="read every file of a dataset, summarise it, name every bad file")
    c.add_argument("root")
    c.add_argument(
        "--dataset",
        required=True,
        choices=datasets("check"),
    )
    c.add_argument(
        "--split",
        default="train",
        choices=sorted({s for name in datasets("check") for s in dataset_spec(name).splits}),
        help="split to walk (BigEarthNet, GeoNRW, SUN-RGBD, NYUv2; SSL4EO-S12 v1.1: ROOT is the split folder)",
    )
    c.add_argument("--s2-product", default="s2c", choices=["s2c", "s2a"])
    c.add_argument("--size", type=_at_least(8), default=264, help="tile side in pixels on the 10 m grid")
    c.add_argument("--quick", action="store_true", help="SSL4EO-S12 v1.1: decode one timestamp per file, not all")
    c.set_defaults(func=_data_check)
    k = data.add_parser("pack", help="convert raw SSL4EO-S12 or BigEarthNet into a packed store (memory-mapped arrays)")
    k.add_argument("root")
    k.add_argument("out")
    k.add_argument("--dataset", default="ssl4eo_s12", choices=datasets("pack"))
    k.add_argument("--s2-product", default="s2c", choices=["s2c", "s2a"])
    k.add_argument("--size", type=_at_least(8), default=264)
    k.add_argument("--workers", type=_at_least(0), default=2, help="reading processes (0: this process)")
    k.add_argument("--void-ids", help="file of location ids to leave out")
    k.add_argument("--overwrite", action="store_true", help="replace a packed store already at OUT")
    k.set_defaults(func=_data_pack)
    st = data.add_parser("stats", help="per-band mean/std of a paired_folders dataset, cached next to the data")
    st.add_argument("--config", required=True)
    st.add_argument("overrides", nargs="*")
    st.set_defaults(func=_data_stats)
    hh = data.add_parser("hha", help="convert a folder of depth images to HHA PNGs (Gupta et al. 2014)")
    hh.add_argument("src")
    hh.add_argument("dst")
    hh.add_argument("--encoding", required=True, choices=["nyu_raw", "sun", "mm", "0.1mm", "m"])
    hh.add_argument("--camera", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help="one camera for all")
    hh.add_argument(
        "--intrinsics",
        help="folder of per-image <name>.txt camera matrices (9 numbers); default: SUN-RGBD's <scene>/intrinsics.txt "
        "next to the depth folder when present, else NYU v2's camera",
    )
    hh.add_argument("--max-depth", type=float, default=8.0, help="clamp depth beyond this many metres (SUN RGB-D: 8)")
    hh.set_defaults(func=_data_hha)


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``low`` (argparse names the option in its one-line error)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return convert


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking ``key=value`` overrides anywhere on the line (also after ``--output DIR``)."""
    args, rest = parser.parse_known_args(argv)
    stray = [w for w in rest if "=" not in w or w.startswith("-")]
    if stray or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``decur`` console script.

    decur's own errors (config, data, run folder) and the OS errors a user can fix (permissions, missing files,
    full disks) are printed as one line ``decur: error: …`` with exit code 2 (config) or 1; ``--debug`` or
    ``DECUR_DEBUG=1`` shows the traceback instead.
    """
    from decur.errors import DecurError, NonFiniteGradientError, NonFiniteLossError  # light: --help starts at once

    args = parse(build_parser(), argv)
    if args.debug or os.environ.get("DECUR_DEBUG", "") not in ("", "0"):
        return int(args.func(args))
    try:
        return int(args.func(args))
    except (DecurError, NonFiniteLossError, NonFiniteGradientError) as err:
        print(f"decur: error: {_one_line(err)}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    except OSError as err:  # a path the user can fix: read-only, missing, below a file, disk full
        print(f"decur: error: {_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("decur: interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except SystemExit as exit_:
        if type(exit_).__name__ == "SIGTERMException":  # Lightning's, after the batch that was running: saved
            print(
                "decur: stopped by SIGTERM/SIGUSR1; the checkpoint holds every finished step; re-run the same command "
                "to resume",
                file=sys.stderr,
            )
            return 143
        # Lightning answers a Ctrl-C inside fit with its own shutdown and SystemExit(1), raised while handling it
        if not isinstance(exit_.__context__, KeyboardInterrupt):
            raise
        print("decur: interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


def _one_line(err: Exception) -> str:
    """The error's own message; a DataLoader worker's error, re-raised with the worker's traceback, by its last line."""
    text = str(err)
    if "\nOriginal Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith(f"{type(err).__module__}.") else last
    return text


def _os_error(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err} (pass --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["build_parser", "main"]
