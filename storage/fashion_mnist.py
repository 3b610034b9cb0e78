"""Fashion-MNIST (Zalando Research, MIT licence: 70,000 28x28 grayscale product photos in ten
categories) loaded into a reqo database as an item catalog: `reqo dataset load fashion-mnist`.

The files come from a directory the user names, else from the Debian package
`dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`, which `make install` installs):
`{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`, in the IDX format of LeCun's MNIST.

Each image becomes an item, `train-00000` .. `train-59999` and `test-00000` .. `test-09999`, with
`category` (the label's name), `label` (0-9), `split` ("train" or "test") and `image` (a
`file://` URL of a PNG written for the item under `<data_dir>/images/<database>/`). There are
no users and no interactions: the catalog is for visual similarity.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from storage.bulk import import_file
from storage.catalog import reset
from storage.database import Database, ReadContext
from storage.movielens import DatasetError

NAME = "fashion-mnist"
DEBIAN_DIRECTORY = Path("/usr/share/datasets/fashion-mnist")
CATEGORIES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The label's name, by label (Zalando's README)."""
ITEM_SCHEMA = "category:string,label:int,split:string,image:image"
SPLITS = {"train": "train", "test": "t10k"}
"""Item id prefix and `split` value -> the file name prefix."""

# IDX type codes (the third byte of the magic number) -> big-endian numpy element types.
_IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Split:
    """One split's images (n x 28 x 28 uint8) and labels (n uint8)."""

    name: str
    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.uint8]

    def item_id(self, index: int) -> str:
        return f"{self.name}-{index:05d}"


# -- reading ---------------------------------------------------------------------------------------


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """The array in an IDX file, gzipped or not (decided by its first bytes, not its name).

    IDX: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
    dimension and the data. Raises DatasetError, naming the file, for a file that is not IDX,
    is cut short or has bytes left over.
    """
    try:
        with path.open("rb") as handle:
            compressed = handle.read(2) == _GZIP_MAGIC
        data = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as error:
        # gzip raises EOFError for a truncated stream and BadGzipFile (an OSError) for a
        # corrupt one; both mean "re-download or reinstall", so say which file.
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'})")
    dtype = np.dtype(_IDX_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(
            f"{path}: {state}: {len(data):,} bytes, the header {shape} needs {expected:,}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def find_directory(path: Path | None = None) -> Path:
    """`path`, or the Debian package's directory, once it holds all four files."""
    directory = DEBIAN_DIRECTORY if path is None else path
    missing = [name for name in _file_names() if _file(directory, name) is None]
    if missing:
        hint = (
            "pass --path to a directory that holds them"
            if path is not None
            else "install them with `apt-get install dataset-fashion-mnist`, or pass --path"
        )
        raise DatasetError(f"{directory} lacks {', '.join(f'{m}.gz' for m in missing)}; {hint}")
    return directory


def read(directory: Path, *, limit: int | None = None) -> list[Split]:
    """Both splits from a directory (see find_directory); `limit`: the first images of each."""
    splits = []
    for name, prefix in SPLITS.items():
        images_path = _file(directory, f"{prefix}-images-idx3-ubyte")
        labels_path = _file(directory, f"{prefix}-labels-idx1-ubyte")
        if images_path is None or labels_path is None:
            raise DatasetError(f"{directory} lacks the {prefix} files")
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DatasetError(f"{images_path}: expected n x height x width unsigned bytes")
        if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
            raise DatasetError(
                f"{labels_path}: expected {images.shape[0]:,} unsigned-byte labels, one per "
                f"image, found shape {labels.shape}"
            )
        if labels.size and int(labels.max()) >= len(CATEGORIES):
            raise DatasetError(f"{labels_path}: label {int(labels.max())} is not 0-9")
        splits.append(
            Split(
                name,
                images[:limit].astype(np.uint8, copy=False),
                labels[:limit].astype(np.uint8, copy=False),
            )
        )
    return splits


# -- loading ---------------------------------------------------------------------------------------


def images_directory(database: Database) -> Path:
    """Where the PNGs of a database go: `<data_dir>/images/<database>/`, beside its file (and
    beside `<data_dir>/models/<database>/`)."""
    if database.path is None:
        raise DatasetError(
            f"database '{database.name}' is in memory; pass an images directory to write to"
        )
    return database.path.parent / "images" / database.name


def load(
    database: Database,
    path: Path | None = None,
    *,
    images: Path | None = None,
    replace: bool = False,
    progress: bool = True,
    limit: int | None = None,
) -> str:
    """Load Fashion-MNIST into a database as items with PNG images; return a report.

    A database that holds items already is refused (nothing is written) unless `replace`, which
    empties it first. PNGs go to `images` (default: images_directory); files that hold the right
    bytes already are kept, so a second load writes none. `limit` loads the first `limit` images
    of each split (for tests and quick demos).
    """
    holding = database.read_sync(item_count)
    if holding and not replace:
        raise DatasetError(
            f"database '{database.name}' already holds {holding:,} items; load into an empty "
            "database, or pass --replace to empty this one first"
        )
    directory = find_directory(path)
    target = images_directory(database) if images is None else images
    splits = read(directory, limit=limit)

    started = time.perf_counter()
    written, kept = write_pngs(splits, target, progress=progress)
    png_seconds = time.perf_counter() - started

    if replace and holding:
        database.write_sync(reset)
    with _staged(items_table(splits, target)) as staged:
        report = import_file(
            database, "items", staged, schema=ITEM_SCHEMA, progress=progress
        ).replace(f" from {staged}", "")
    return (
        f"Fashion-MNIST from {directory}:\n{report}\n"
        f"PNGs under {target}: {written:,} written, {kept:,} already there, "
        f"in {png_seconds:.2f} s"
    )


def item_count(ctx: ReadContext) -> int:
    """How many items the database holds."""
    row = ctx.conn.execute("SELECT count(*) FROM items").fetchone()
    return int(row[0]) if row else 0


def png_path(directory: Path, item_id: str) -> Path:
    """The PNG of an item: one file per item id, so ids and files match at a glance."""
    return directory / f"{item_id}.png"


def write_pngs(splits: list[Split], directory: Path, *, progress: bool = True) -> tuple[int, int]:
    """Write each image as a grayscale PNG; return (written, kept).

    A file is kept when it holds exactly the bytes that would be written (PNG encoding is
    deterministic), so a re-load costs an encode and a read per image rather than a file
    creation, and a file cut short by an interrupted load, or left by another copy of the
    data, is rewritten.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    total = sum(len(split.labels) for split in splits)
    with tqdm(total=total, desc="write PNGs", unit="image", disable=not progress) as bar:
        for split in splits:
            for index, pixels in enumerate(split.images):
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                encoded = buffer.getvalue()
                target = png_path(directory, split.item_id(index))
                if _holds(target, encoded):
                    kept += 1
                else:
                    target.write_bytes(encoded)
                    written += 1
                bar.update(1)
    return written, kept


def items_table(splits: list[Split], directory: Path) -> pa.Table:
    """The items in the columns the bulk importer reads (`itemId` plus the properties)."""
    ids: list[str] = []
    labels: list[int] = []
    split_names: list[str] = []
    urls: list[str] = []
    # Path.as_uri needs an absolute path, and a relative one would break when the server runs
    # from another directory.
    base = directory.resolve()
    for split in splits:
        for index in range(len(split.labels)):
            item_id = split.item_id(index)
            ids.append(item_id)
            split_names.append(split.name)
            urls.append(png_path(base, item_id).as_uri())
        labels.extend(int(label) for label in split.labels)
    return pa.table(
        {
            "itemId": pa.array(ids, pa.string()),
            "category": pa.array([CATEGORIES[label] for label in labels], pa.string()),
            "label": pa.array(labels, pa.int64()),
            "split": pa.array(split_names, pa.string()),
            "image": pa.array(urls, pa.string()),
        }
    )


def _file_names() -> list[str]:
    return [
        f"{prefix}-{kind}-ubyte"
        for prefix in SPLITS.values()
        for kind in ("images-idx3", "labels-idx1")
    ]


def _file(directory: Path, name: str) -> Path | None:
    """`name.gz`, or `name` for a copy that was gunzipped."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _holds(path: Path, content: bytes) -> bool:
    try:
        # A size check first: it settles most mismatches without reading the file.
        return path.stat().st_size == len(content) and path.read_bytes() == content
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _staged(items: pa.Table) -> Iterator[Path]:
    """The items as a Parquet file for the bulk importer (typed columns, read by DuckDB)."""
    with tempfile.TemporaryDirectory(prefix="reqo-fashion-mnist-") as directory:
        staged = Path(directory) / "items.parquet"
        pq.write_table(items, staged)
        yield staged
