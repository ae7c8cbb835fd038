"""``decur data download``: a dataset, or a small piece of it to try first, into the layout decur reads.

SSL4EO-S12 v1.1 comes from its Hugging Face Hub repository (``huggingface_hub``: resumable, every file checked
against the hash the Hub records), shard by shard, so ``--files 2`` fetches 2 x 64 locations per product. A
local mirror of the repository (``--source DIR``, e.g. a copy on a cluster's shared storage) works the same way
without the network. The other datasets have no source decur can fetch unattended (registration, licence
acceptance or multi-part archives): their ``source`` (``decur.datasets``) names where each is, its licence, size
and the layout decur reads, and the command prints that in one line.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from decur.data.errors import DatasetError
from decur.datasets import SSL4EO_V11_PRODUCTS, V11_REPO, dataset_spec

V11_URL = f"https://huggingface.co/datasets/{V11_REPO}"


def download_v11(
    root: Path,
    split: str = "train",
    products: list[str] | None = None,
    files: int = 1,
    source: Path | None = None,
) -> Path:
    """The first ``files`` shards of ``split`` for ``products`` (decur names, default all four) into ``root``.

    Args:
        root: Target folder; the shards land in ``root/<split>/<FOLDER>/`` (the release's layout).
        split: ``train`` or ``val``.
        products: Any of ``s1grd``, ``s2l1c``, ``s2l2a``, ``s2rgb``.
        files: Shards per product (64 locations each); the same file names for every product.
        source: A local mirror of the repository instead of the Hub.

    Returns:
        The split folder, ``root/<split>``, ready for ``data.root``.

    Raises:
        DatasetError: An unknown product, a source that cannot be reached or lacks the files (naming the URL and
            the target folder).

    """
    products = products or list(SSL4EO_V11_PRODUCTS)
    unknown = sorted(set(products) - set(SSL4EO_V11_PRODUCTS))
    if unknown or files < 1:
        raise DatasetError(root, f"products {unknown} unknown or {files} files", f"products among "
                           f"{list(SSL4EO_V11_PRODUCTS)}, --files >= 1")  # fmt: skip
    folders = [SSL4EO_V11_PRODUCTS[p][0] for p in products]
    names = _listing(source, split, folders)
    common = sorted(set.intersection(*(set(names[f]) for f in folders)))[:files]
    where = source or V11_URL
    if not common:
        raise DatasetError(root, f"{where} has no {split} shards for {folders}", "check --split and --products")
    for folder in folders:
        for name in common:
            target = root / split / folder / name
            if target.is_file():
                continue  # a finished file of an earlier, interrupted download
            target.parent.mkdir(parents=True, exist_ok=True)
            _fetch(source, f"{split}/{folder}/{name}", target, root)
    return root / split


def _listing(source: Path | None, split: str, folders: list[str]) -> dict[str, list[str]]:
    """The shard names per release folder of ``split``, from the mirror or the Hub."""
    if source is not None:
        return {f: sorted(p.name for p in (source / split / f).glob("*.zarr.zip")) for f in folders}
    try:
        from huggingface_hub import HfApi

        paths = HfApi().list_repo_files(V11_REPO, repo_type="dataset")
    except Exception as err:  # offline, a proxy, the Hub down: one line naming where and what
        raise DatasetError(
            Path(V11_URL),
            f"cannot be reached ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})",
            "go online, or copy the repository's files to a folder and pass it as --source",
        ) from None
    out: dict[str, list[str]] = {f: [] for f in folders}
    for path in paths:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == split and parts[1] in out and parts[2].endswith(".zarr.zip"):
            out[parts[1]].append(parts[2])
    return out


def _fetch(source: Path | None, path: str, target: Path, root: Path) -> None:
    """One file into ``target`` through a ``.partial`` name: an interrupted download never looks finished."""
    partial = target.with_name(target.name + ".partial")
    if source is not None:
        shutil.copyfile(source / path, partial)
    else:
        from huggingface_hub import hf_hub_download

        try:  # the Hub checks the file against its recorded hash; resumes a partial download of its own
            cached = hf_hub_download(V11_REPO, path, repo_type="dataset")
        except Exception as err:
            raise DatasetError(
                Path(f"{V11_URL}/blob/main/{path}"),
                f"cannot be downloaded into {target} ({type(err).__name__})",
                "retry (finished files are kept), or fetch it by hand into that folder",
            ) from None
        shutil.copyfile(cached, partial)
    partial.rename(target)


def describe(name: str, root: Path) -> str:
    """One line: where ``name`` is published, its licence and size, and the layout to unpack it into ``root``."""
    s = dataset_spec(name).source
    if s is None:
        return f"{name}: no published source is declared; see its documentation"
    return f"{name}: get it from {s.url} ({s.licence}, {s.size}) and unpack it into {root} as {s.layout}"


def fetch_v11(root: Path, options: dict[str, Any]) -> int:
    """``decur data download ssl4eo_s12_v11``: ``download_v11``, then a quick ``decur data check`` of the shards.

    Returns:
        The command's exit status: 0, or 1 when the check names a problem.

    """
    from decur.data.check import check_ssl4eo_s12_v11  # (torch: `download` of the other datasets stays light)

    products = options["products"].split(",") if options.get("products") else None
    source = Path(options["source"]) if options.get("source") else None
    files = int(options.get("files", 1))
    split = download_v11(root, options.get("split", "train"), products, files, source)
    print(f"downloaded {files} shard(s) per product into {split}; checking them (decur data check --quick)")
    report = check_ssl4eo_s12_v11(split, quick=True)
    print(report.format())
    print(f"train on it with data.dataset=ssl4eo_s12_v11 data.root={split}")
    return 1 if report.problems else 0
