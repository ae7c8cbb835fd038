"""``decur data download``: a dataset, or a small piece of it to try first, into the layout decur reads.

SSL4EO-S12 v1.1 comes from its Hugging Face Hub repository (``huggingface_hub``: resumable, every file checked
against the hash the Hub records), shard by shard, so ``--files 2`` fetches 2 x 64 locations per product. A
local mirror of the repository (``--source DIR``, e.g. a copy on a cluster's shared storage) works the same way
without the network.

SSL4EO-S12 v1.0, BigEarthNet (v1) and GeoNRW come through torchgeo's own downloaders (``download=True,
checksum=True``: its URLs and MD5 sums, its extraction), whose layouts are the ones decur reads; archives already
in the target folder are not fetched again. A failed download is one line naming the URL and the target folder.
The datasets torchgeo cannot fetch (SUN-RGBD and NYUv2: research-use sites; BigEarthNet v2.0, whose torchgeo 0.8
downloader names its parts by their MD5 sums) have a ``source`` (``decur.datasets``): the command prints where each
is, its licence, size and the layout decur reads.
"""

from __future__ import annotations

import contextlib
import shutil
import urllib.request
from collections.abc import Iterator
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
            _fetch(source, f"{split}/{folder}/{name}", target)
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
            V11_URL,
            f"cannot be reached ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})",
            "go online, or copy the repository's files to a folder and pass it as --source",
        ) from None
    out: dict[str, list[str]] = {f: [] for f in folders}
    for path in paths:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == split and parts[1] in out and parts[2].endswith(".zarr.zip"):
            out[parts[1]].append(parts[2])
    return out


def _fetch(source: Path | None, path: str, target: Path) -> None:
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
                f"{V11_URL}/blob/main/{path}",  # a str: Path() would fold the URL's // into /
                f"cannot be downloaded into {target} ({type(err).__name__})",
                "retry (finished files are kept), or fetch it by hand into that folder",
            ) from None
        shutil.copyfile(cached, partial)
    partial.rename(target)


def describe(name: str, root: Path) -> str:
    """One line: where ``name`` is published, its licence and size, and the layout to unpack it into ``root``."""
    return f"{name}: {_where(name, root)}"


def _where(name: str, root: Path) -> str:
    s = dataset_spec(name).source
    if s is None:
        return "no published source is declared; see its documentation"
    return f"get it from {s.url} ({s.licence}, {s.size}) and unpack it into {root} as {s.layout}"


def fetch_v11(root: Path, options: dict[str, Any]) -> int:
    """``decur data download ssl4eo_s12_v11``: ``download_v11``, then a quick ``decur data check`` of the shards.

    Args:
        root: The target folder.
        options: The command's options (``split``, ``products``, ``files``, ``source``).

    Returns:
        The command's exit status: 0, or 1 when the check names a problem.

    """
    products = options["products"].split(",") if options["products"] else None
    source = Path(options["source"]) if options["source"] else None
    files = options["files"]
    split = download_v11(root, options["split"], products, files, source)
    print(f"downloaded {files} shard(s) per product into {split}")
    return _check_after("ssl4eo_s12_v11", split, options, quick=True)


def fetch_ssl4eo_s12(root: Path, options: dict[str, Any]) -> int:
    """``decur data download ssl4eo_s12``: torchgeo's ``SSL4EOS12`` per product (default ``s1,s2c``, the paper's).

    Each product is about 500 GB in 10-12 parts, concatenated and extracted into ``root/<product>/`` by torchgeo.
    """
    products = options["products"].split(",") if options["products"] else ["s1", "s2c"]
    unknown = sorted(set(products) - {"s1", "s2c", "s2a"})
    if unknown:
        raise DatasetError(root, f"--products {unknown} unknown for ssl4eo_s12", "products among s1,s2c,s2a")
    for product in products:
        _torchgeo("ssl4eo_s12", "SSL4EOS12", root, split=product)
    s2_product = "s2c" if "s2c" in products else "s2a"
    return _check_after("ssl4eo_s12", root, options, s2_product=s2_product)


def fetch_bigearthnet(root: Path, options: dict[str, Any]) -> int:
    """``decur data download bigearthnet``: torchgeo's ``BigEarthNet`` (v1: S1 + S2 archives and the split lists)."""
    _torchgeo("bigearthnet", "BigEarthNet", root)  # torchgeo's defaults: both sensors, 19 classes
    return _check_after("bigearthnet", root, options)


def fetch_geonrw(root: Path, options: dict[str, Any]) -> int:
    """``decur data download geonrw``: torchgeo's ``GeoNRW`` (one archive holding every city)."""
    _torchgeo("geonrw", "GeoNRW", root)  # every city is in the one archive, whatever the split
    return _check_after("geonrw", root, options)


def _torchgeo(name: str, dataset: str, root: Path, **kwargs: Any) -> None:
    """Fetch ``dataset`` with torchgeo (``download=True, checksum=True``) into ``root``; a failure is one line."""
    try:
        import torchgeo.datasets
    except ImportError:
        raise DatasetError(
            root,
            f"downloading {name} goes through torchgeo's downloader, and torchgeo is not installed",
            f"pip install 'decur[torchgeo]' and run this again, or {_where(name, root)}",
        ) from None
    what = " ".join([dataset, *map(str, kwargs.values())])  # e.g. "SSL4EOS12 s1"
    print(f"downloading {name} ({what}) with torchgeo into {root}; archives already there are kept")
    with _requested_urls() as urls:
        try:
            getattr(torchgeo.datasets, dataset)(root=str(root), download=True, checksum=True, **kwargs)
        except Exception as err:  # offline, HTTP errors, a hash that differs, a cut archive: one line
            where = urls[-1] if urls else f"torchgeo's {dataset} source"
            why = "its MD5 differs from torchgeo's record" if "corrupted" in str(err) else type(err).__name__
            detail = str(err).splitlines()[0][:160] if str(err) else ""
            raise DatasetError(
                where,
                f"cannot be downloaded into {root} ({why}: {detail})",
                "go online and run this again (finished archives are kept); a file left cut or corrupt by "
                f"this attempt: delete it in {root} first",
            ) from None


@contextlib.contextmanager
def _requested_urls() -> Iterator[list[str]]:
    """The URLs opened while the block runs (torchgeo's downloaders open each file's URL with urllib first)."""
    seen: list[str] = []
    opener = urllib.request.urlopen

    def recording(url: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(url.full_url if isinstance(url, urllib.request.Request) else str(url))
        return opener(url, *args, **kwargs)

    urllib.request.urlopen = recording
    try:
        yield seen
    finally:
        urllib.request.urlopen = opener


def _check_after(name: str, root: Path, options: dict[str, Any], s2_product: str = "s2c", quick: bool = False) -> int:
    """``decur data check`` of what arrived; the exit status of the command (1 when it names a problem)."""
    from decur.data.check import check  # (torch: `download` of the other datasets stays light)

    split = options["split"]
    print(f"checking {root} (decur data check {root} --dataset {name} --split {split}{' --quick' * quick})")
    report = check(name, root, split, s2_product=s2_product, quick=quick)
    print(report.format())
    uses = dataset_spec(name).uses
    if "pretrain" in uses:
        print(f"pretrain on it with data.dataset={name} data.root={root}")
    if "transfer" in uses:
        print(f"transfer to it with dataset={name} root={root}")
    return 1 if report.problems else 0
