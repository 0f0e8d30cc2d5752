"""Read a training set as the user has it: CSV, Parquet, NumPy, or a folder of images.

Every reader returns a :class:`Table`: the rows as floats, the labels (when
there are any), and the problems found while reading (a cell that is not a
number, a row with the wrong number of fields, an image that cannot be
decoded). A row with a problem keeps its place, so row numbers in a report
are the row numbers of the file (0-based, header excluded); its features are
NaN and the checks that need numbers skip it. Nothing here executes what it
reads: NumPy files are read with ``allow_pickle=False``, images through
Pillow with its decompression-bomb limit.

>>> t = read_csv_text("a,b,label\\n1,2,0\\n3,x,1\\n", labels="label")
>>> t.x.shape, t.y.tolist(), [(p.row, p.reason) for p in t.problems]
((2, 2), [0, 1], [(1, "column 'b' holds 'x', not a number")])
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from atlasguard.errors import DataError

__all__ = ["Problem", "Table", "read_csv_text", "read_table"]

FloatArray = npt.NDArray[np.float64]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
LABEL_NAMES = ("label", "labels", "target", "class", "y")
MAX_IMAGE_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Problem:
    """A row that could not be read as the others were."""

    row: int
    reason: str


@dataclass(frozen=True)
class Table:
    """A data set: ``x`` (rows x features, NaN where unreadable), labels, and provenance."""

    x: FloatArray
    y: npt.NDArray[np.int64] | None
    columns: tuple[str, ...]
    problems: tuple[Problem, ...] = ()
    classes: tuple[str, ...] = ()  # the label values as written, indexed by y
    kind: str = "table"  # table | images
    sources: tuple[str, ...] = field(default=(), repr=False)  # image files, by row
    texts: tuple[str, ...] = field(default=(), repr=False)  # the text column, by row

    @property
    def usable(self) -> npt.NDArray[np.bool_]:
        """Rows with every feature finite and, if labelled, a label."""
        ok = np.isfinite(self.x).all(axis=1)
        if self.y is not None:
            ok &= self.y >= 0
        return np.asarray(ok)


def _encode_labels(raw: list[str | None]) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """Labels as written -> 0..k-1 (numeric labels in numeric order); missing -> -1."""
    present = sorted({v for v in raw if v is not None}, key=_label_key)
    index = {v: i for i, v in enumerate(present)}
    y = np.array([index[v] if v is not None else -1 for v in raw], np.int64)
    return y, tuple(present)


def _label_key(value: str) -> tuple[int, float, str]:
    try:
        number = float(value)
    except ValueError:
        return (1, 0.0, value)
    return (0, number, value) if math.isfinite(number) else (1, 0.0, value)


def _pick_label(header: list[str], labels: str | None) -> int | None:
    if labels is None:
        lowered = [h.strip().lower() for h in header]
        return next((lowered.index(n) for n in LABEL_NAMES if n in lowered), None)
    if labels in header:
        return header.index(labels)
    try:
        position = int(labels)
    except ValueError:
        raise DataError(
            f"there is no column {labels!r}; the columns are {', '.join(header[:20])}"
        ) from None
    if not -len(header) <= position < len(header):
        raise DataError(f"column {position} is out of range: there are {len(header)} columns")
    return position % len(header)


def read_csv_text(
    text: str,
    *,
    labels: str | None = None,
    text_column: str | None = None,
    max_rows: int = 10_000_000,
) -> Table:
    """Parse CSV text. The first row is a header when any of its cells is not a number.
    ``text_column`` is kept as text (for the content policy), not read as a feature."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    for number, row in enumerate(reader):
        if number > max_rows:
            raise DataError(f"more than {max_rows:,} rows; audit the data in parts")
        rows.append(row)
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise DataError("the file holds no rows")
    first = rows[0]
    has_header = any(not _is_number(cell) for cell in first)
    header = [c.strip() for c in first] if has_header else [f"c{i}" for i in range(len(first))]
    body = rows[1:] if has_header else rows
    label_at = _pick_label(header, labels)
    text_at = None
    if text_column is not None:
        text_at = _pick_label(header, text_column)
        if text_at == label_at:
            raise DataError("the text column and the label column must differ")
    width = len(header)
    feature_cols = [i for i in range(width) if i not in (label_at, text_at)]
    texts: list[str] = []
    x = np.full((len(body), len(feature_cols)), np.nan)
    raw_labels: list[str | None] = []
    problems: list[Problem] = []
    for r, row in enumerate(body):
        label = None
        if text_at is not None:
            texts.append(row[text_at] if len(row) > text_at else "")
        if len(row) != width:
            problems.append(Problem(r, f"has {len(row)} fields, the header has {width}"))
        else:
            values, bad = [], None
            for i in feature_cols:
                cell = row[i].strip()
                value = _number(cell)
                if value is None or not math.isfinite(value):
                    bad = bad or f"column {header[i]!r} holds {_short(cell)}, not a number"
                values.append(np.nan if value is None else value)
            if bad is not None:
                problems.append(Problem(r, bad))
            else:
                x[r] = values
            if label_at is not None:
                label = row[label_at].strip() or None
                if label is None and bad is None:
                    problems.append(Problem(r, f"has no label in column {header[label_at]!r}"))
        raw_labels.append(label)
    columns = tuple(header[i] for i in feature_cols)
    if label_at is None:
        return Table(x, None, columns, tuple(problems), texts=tuple(texts))
    y, classes = _encode_labels(raw_labels)
    return Table(x, y, columns, tuple(problems), classes, texts=tuple(texts))


def _is_number(cell: str) -> bool:
    return _number(cell.strip()) is not None


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _short(cell: str) -> str:
    return repr(cell if len(cell) <= 20 else cell[:20] + "…")


def _read_numpy(path: Path, labels: str | None) -> Table:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{path.name} is not a NumPy file that can be read safely ({exc})"
        ) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            x_name = next((n for n in ("x", "X", "data", "features") if n in names), None)
            if x_name is None:
                raise DataError(
                    f"{path.name} holds {names}; name the features 'x' (and labels 'y')"
                )
            y_name = labels or next((n for n in ("y", "Y", "labels", "target") if n in names), None)
            if y_name is not None and y_name not in names:
                raise DataError(f"{path.name} holds no array {y_name!r}; it holds {names}")
            x, y = loaded[x_name], loaded[y_name] if y_name is not None else None
    else:
        x, y = loaded, None
        if labels is not None:
            column = int(labels)
            y = x[:, column]
            x = np.delete(x, column, axis=1)
    return _from_arrays(x, y)


def _from_arrays(x: npt.ArrayLike, y: npt.ArrayLike | None) -> Table:
    rows = np.asarray(x)
    if rows.dtype.kind not in "biuf" or rows.ndim < 2:
        raise DataError("features must be a numeric array of at least 2 dimensions (rows first)")
    rows = rows.reshape(len(rows), -1).astype(np.float64)
    problems = tuple(
        Problem(int(r), "holds a value that is NaN or infinite")
        for r in np.flatnonzero(~np.isfinite(rows).all(axis=1))
    )
    columns = tuple(f"f{i}" for i in range(rows.shape[1]))
    if y is None:
        return Table(rows, None, columns, problems)
    raw = np.asarray(y)
    if raw.ndim != 1 or len(raw) != len(rows):
        raise DataError(f"{len(rows)} rows but labels of shape {raw.shape}")
    labels, classes = _encode_labels([str(v.item()) if hasattr(v, "item") else str(v) for v in raw])
    return Table(rows, labels, columns, problems, classes)


def _read_parquet(path: Path, labels: str | None, text_column: str | None = None) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the data extra installs it
        raise DataError(
            "reading Parquet needs the data extra: pip install 'atlasguard[data]'"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise DataError(
            f"{path.name} is not a readable Parquet file ({type(exc).__name__})"
        ) from None
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table.column_names)
    columns = [table.column(n).to_pylist() for n in table.column_names]
    for row in zip(*columns, strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return read_csv_text(buffer.getvalue(), labels=labels, text_column=text_column)


def _read_images(root: Path) -> Table:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    # every file is a row, whatever its name says: one that is not an image is reported,
    # not skipped (hidden files such as .DS_Store are left out)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
        raise DataError(f"{root.name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images: list[FloatArray | None] = []
    problems: list[Problem] = []
    for r, path in enumerate(files):
        try:
            with Image.open(path) as image:
                image.draft("L", image.size)
                images.append(np.asarray(image.convert("L"), np.float64) / 255.0)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            images.append(None)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                why = f"cannot be decoded as an image ({type(exc).__name__})"
            else:
                why = f"is not an image ({path.suffix or 'no suffix'}): remove it or convert it"
            problems.append(Problem(r, why))
    shapes = [im.shape for im in images if im is not None]
    if not shapes:
        raise DataError(f"none of the images in {root.name} can be decoded")
    common = max(set(shapes), key=shapes.count)
    x = np.full((len(files), common[0] * common[1]), np.nan)
    for r, pixels in enumerate(images):
        if pixels is None:
            continue
        if pixels.shape != common:
            problems.append(
                Problem(
                    r, f"is {pixels.shape[1]}x{pixels.shape[0]}, the others {common[1]}x{common[0]}"
                )
            )
            continue
        x[r] = pixels.ravel()
    raw = [p.parent.name if p.parent != root else None for p in files]
    y, classes = _encode_labels(raw) if any(v is not None for v in raw) else (None, ())
    names = tuple(str(p.relative_to(root)) for p in files)
    columns = tuple(f"p{i}" for i in range(x.shape[1]))
    return Table(
        x, y, columns, tuple(sorted(problems, key=lambda p: p.row)), classes, "images", names
    )


def read_table(path: Path, *, labels: str | None = None, text_column: str | None = None) -> Table:
    """Read ``path`` by its kind: a folder of images (one sub-folder per class), ``.csv``,
    ``.parquet``, ``.npy`` or ``.npz``."""
    if path.is_dir():
        return _read_images(path)
    if not path.is_file():
        raise DataError(f"{path.name} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{path.name} is not UTF-8 text; save it as UTF-8 CSV") from None
        return read_csv_text(text, labels=labels, text_column=text_column)
    if text_column is not None:
        raise DataError("a text column can be read from CSV or Parquet only")
    if suffix in (".npy", ".npz"):
        return _read_numpy(path, labels)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, labels, text_column)
    raise DataError(f"{path.name}: give a .csv, .parquet, .npy or .npz file, or a folder of images")
