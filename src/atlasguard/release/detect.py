"""The checks the release gate runs on one item: what it is, and what its text reveals.

Recognition is by content first (the model-file sniffers of
:mod:`atlasguard.artifacts.formats`, plus TFLite, Core ML, TensorFlow.js, GGML
and Git LFS pointers), by name only as a weaker second signal. Text checks run
on text files, on the printable strings of binary files, on notebook cells and
on decoded base64 blobs. Nothing is executed, imported or unpickled.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath

from atlasguard.artifacts.findings import Severity
from atlasguard.release.findings import ReleaseFinding
from atlasguard.release.pdf import PdfText, pdf_read
from atlasguard.release.settings import ReleaseSettings
from atlasguard.release.walk import Item, archive_kind

__all__ = [
    "IMAGE_SUFFIXES",
    "Detector",
    "PdfText",
    "base64_blobs",
    "image_metadata",
    "model_kind",
    "notebook_outputs",
    "pdf_read",
    "text_of",
]

MODEL_SUFFIXES = frozenset(
    [
        ".pt",
        ".pth",
        ".ckpt",
        ".bin",
        ".h5",
        ".hdf5",
        ".keras",
        ".pb",
        ".tflite",
        ".lite",
        ".mlmodel",
        ".onnx",
        ".ort",
        ".safetensors",
        ".gguf",
        ".ggml",
        ".joblib",
        ".pkl",
        ".pickle",
        ".npz",
        ".weights",
        ".caffemodel",
        ".params",
        ".msgpack",
        ".mar",
        ".engine",
        ".plan",
        ".pdparams",
        ".pdmodel",
        ".mnn",
        ".ncnn",
        ".xgb",
        ".ubj",
        ".lgb",
        ".cbm",
        ".pmml",
        ".nemo",
        ".llamafile",
    ]
)
DATA_SUFFIXES = frozenset(
    [
        ".csv",
        ".tsv",
        ".psv",
        ".jsonl",
        ".ndjson",
        ".parquet",
        ".feather",
        ".arrow",
        ".avro",
        ".orc",
        ".tfrecord",
        ".npy",
        ".npz",
        ".h5",
        ".hdf5",
        ".sqlite",
        ".sqlite3",
        ".db",
        ".xlsx",
        ".xls",
        ".pq",
        ".libsvm",
        ".arff",
        ".mat",
        ".rds",
        ".rdata",
        ".sav",
    ]
)
IMAGE_SUFFIXES = frozenset(
    [".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif"]
)
# Directories whose contents ship to users' devices or browsers as they are.
CLIENT_DIRS = frozenset(
    [
        "assets",
        "public",
        "static",
        "www",
        "wwwroot",
        "res",
        "raw",
        "resources",
        "web",
        "dist-web",
        "extension",
    ]
)
MEDIA = (  # decoded blobs that are plain media or code, not worth a finding
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"RIFF",
    b"wOFF",
    b"wOF2",
    b"OTTO",
    b"\x00\x01\x00\x00",
    b"\x00asm",
    b"%PDF",
    b"<svg",
    b"<?xml",
    b"ID3",
    b"OggS",
    b"\x00\x00\x01\x00",
    b"\x1aE\xdf\xa3",
    b"fLaC",
)


def _printable(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return False
    sample = data[:8192]
    bad = sum(1 for b in sample if b < 9 or 13 < b < 32)
    return bad <= len(sample) // 100


_TAG = re.compile(r"<[^<>]{0,2000}>")


def text_of(item: Item) -> tuple[str, bool, bool] | None:
    """``(text, is_text, unread)``: the text of a text file, or the printable strings of
    a binary one (``is_text`` False), with a PDF's page text added (``unread`` when some
    of it is glyph ids it cannot read); ``None`` for an item too large to read whole."""
    data = item.data
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace"), True, False
    if _printable(data):
        return data.decode("utf-8", errors="replace"), True, False
    strings = re.findall(rb"[\x20-\x7e\t]{6,}", data[: 16 << 20])
    text = b"\n".join(strings).decode("ascii")
    if data[:5] == b"%PDF-":
        pages = pdf_read(data)
        return text + "\n" + pages.text, False, pages.unread
    return text, False, False


# -- models ------------------------------------------------------------------------------

# TensorFlow's checkpoint shards: names no other tool writes
_TF_CHECKPOINT = re.compile(
    r"(^|\.)(ckpt|checkpoint|variables)([-.][^/]*)?\.(index|data-\d{5}-of-\d{5})$"
)
_LFS = re.compile(
    rb"\Aversion https://git-lfs\.github\.com/spec/v1\s+oid sha256:([0-9a-f]{64})\s+size (\d+)"
)


def model_kind(item: Item) -> str | None:
    """What model format ``item`` is, by content (``None`` when it is not one)."""
    head = item.data[:4096]
    suffix = PurePosixPath(item.name).suffix.lower()
    if head[4:8] == b"TFL3" or (head[4:8] == b"TFL2"):
        return "TensorFlow Lite model"
    if head[:4] in (b"GGUF", b"lmgg", b"fmgg", b"tjgg", b"algg", b"ggjt", b"ggml"):
        return "GGUF/GGML model"
    kind = archive_kind(head)
    if kind == "zip":
        return _zip_model(item)
    if kind is not None:
        return None
    if re.search(r"\.(ckpt|checkpoint)[^/]*\.(index|data-\d{5}-of-\d{5})$", item.name) or (
        re.fullmatch(
            r"(variables|ckpt-\d+|model\.ckpt-\d+)\.(index|data-\d{5}-of-\d{5})", item.name
        )
    ):
        return "TensorFlow checkpoint"
    if head[:4] == b"CBM1":
        return "CatBoost model"
    if head.startswith(b"tree\nversion=v"):
        return "LightGBM model"
    if head.lstrip()[:5] == b"<PMML" or (head.startswith(b"<?xml") and b"<PMML" in head):
        return "PMML model"
    if suffix == ".mlmodel" and head[:1] == b"\x08":
        return "Core ML model"
    if item.name == "Manifest.json" and ".mlpackage" in item.path:
        return "Core ML package"
    if item.name == "saved_model.pb" or item.name == "saved_model.pbtxt":
        return "TensorFlow SavedModel"
    if head[:1] in (b"{", b"[") and suffix in (".json", ""):
        return _json_model(item)
    if head[:1] in (b"{", b"[", b"#", b"<") or _printable(head):
        return None  # text: no binary model format starts so
    from atlasguard.artifacts.scan import scanners

    names: list[str] = []
    for scanner in scanners():
        try:
            if scanner.sniff(head):
                names.append(scanner.name)
        except Exception:  # noqa: S112 - a sniffer that chokes does not claim the file
            continue
    if "pickle" in names:
        proto = head[:1] == b"\x80" and b"\x02" <= head[1:2] <= b"\x05"
        if proto or suffix in MODEL_SUFFIXES:
            return "pickled object (model or data: loading it runs code)"
    for name, label in (
        ("safetensors", "safetensors weights"),
        ("gguf", "GGUF/GGML model"),
        ("onnx", "ONNX model"),
        ("hdf5", "HDF5 file (Keras weights or data)"),
        ("savedmodel", "TensorFlow SavedModel"),
        ("keras-metadata", "Keras model"),
    ):
        if name in names:
            return label
    if "joblib-zfile" in names:
        return "joblib-compressed pickle (model or data: loading it runs code)"
    if suffix == ".pb" and any(
        op in item.data[: 1 << 20] for op in (b"Placeholder", b"VarHandleOp")
    ):
        return "TensorFlow graph"
    return None


def _zip_model(item: Item) -> str | None:
    import io
    import zipfile

    if not item.complete and item.disk is None:
        return None
    try:
        opened = io.BytesIO(item.data) if item.complete else item.disk
        with zipfile.ZipFile(opened) as archive:  # type: ignore[arg-type]
            names = archive.namelist()[:100_000]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None
    if any(n.endswith("data.pkl") for n in names) and any("/data/" in n for n in names):
        return "PyTorch checkpoint"
    if any(n.endswith("data.pkl") for n in names):
        return "PyTorch checkpoint (pickled)"
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return "Keras model"
    if any(n.endswith("constants.pkl") for n in names) and any(n.endswith(".json") for n in names):
        return "TorchScript/TorchServe archive"
    if "MAR-INF/MANIFEST.json" in names:
        return "TorchServe model archive"
    if (
        "schema.json" in names
        and any(n.endswith(".npy") for n in names)
        and item.name.endswith(".skops")
    ):
        return "scikit-learn model (skops)"
    npy = [n for n in names if n.endswith(".npy")]
    if npy and len(npy) == len(names) and _MODEL_NAME.search(item.name):
        return "NumPy weights archive"
    return None


# a NumPy archive named as weights is taken for one (its content alone says only "arrays")
_MODEL_NAME = re.compile(r"(weight|model|ckpt|checkpoint|param|state_dict|embedding)", re.I)


def _json_model(item: Item) -> str | None:
    head = item.data[:65536]
    if b'"weightsManifest"' in head and b'"modelTopology"' in head:
        return "TensorFlow.js model"
    if b'"learner"' in head and b'"gradient_booster"' in head:
        return "XGBoost model"
    return None


def lfs_pointer(item: Item) -> tuple[str, int] | None:
    match = _LFS.match(item.data[:400]) if item.size < 1024 else None
    return (match.group(1).decode(), int(match.group(2))) if match else None


# -- data sets ---------------------------------------------------------------------------

_DATA_MAGIC = (
    (b"PAR1", "Parquet table"),
    (b"ARROW1", "Arrow/Feather table"),
    (b"Obj\x01", "Avro data file"),
    (b"ORC", "ORC table"),
    (b"\x93NUMPY", "NumPy array"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\x89HDF\r\n\x1a\n", "HDF5 file"),
)


def data_kind(item: Item, settings: ReleaseSettings) -> str | None:
    """A data set by content: a table format above ``min_data_bytes``, or a delimited /
    JSON-lines text with at least ``min_data_rows`` consistent rows."""
    head = item.data[:16]
    suffix = PurePosixPath(item.name).suffix.lower()
    for magic, label in _DATA_MAGIC:
        if head.startswith(magic):
            if magic == b"SQLite format 3\x00" or item.size >= settings.min_data_bytes:
                return f"{label} ({item.size} bytes)"
            return None
    if suffix == ".tfrecord" and item.size >= settings.min_data_bytes:
        return f"TFRecord file ({item.size} bytes)"
    if re.search(r"(^|/)xl/worksheets/[^/]+\.xml$", item.inner):
        rows = item.data.count(b"<row ") + item.data.count(b"<row>")
        return f"spreadsheet ({rows} rows)" if rows >= settings.min_data_rows else None
    if not _printable(item.data[:65536]):
        return None
    if suffix in (".jsonl", ".ndjson") or item.data[:1] == b"{":
        lines = item.data.count(b"\n{")
        many = lines + 1 >= settings.min_data_rows and item.data.lstrip()[:1] == b"{"
        if many and _looks_json_lines(item.data):
            return f"JSON-lines records ({lines + 1}+ rows)"
    if item.data.lstrip()[:1] == b"[" and item.complete and item.size <= 64 << 20:
        records = _json_records(item.data)
        if records >= settings.min_data_rows:
            return f"JSON array of {records} records"
    rows = _table_rows(item.data)
    if rows >= settings.min_data_rows:
        return f"delimited table ({rows}{'+' if not item.complete else ''} rows)"
    return None


def _json_records(data: bytes) -> int:
    """How many objects (or rows) a top-level JSON array holds; 0 when it is not one."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return 0
    if not isinstance(doc, list) or len(doc) < 2:
        return 0
    kinds = {type(v) for v in doc[:50]}
    return len(doc) if kinds in ({dict}, {list}) else 0


def _looks_json_lines(data: bytes) -> bool:
    lines = data[:65536].splitlines()[:20]
    ok = 0
    for line in lines[:-1] if len(lines) > 1 else lines:
        try:
            ok += isinstance(json.loads(line), dict)
        except ValueError:
            return False
    return ok >= 5


def _table_rows(data: bytes) -> int:
    """Rows of a delimited table: the same number (>= 2) of one delimiter on every line."""
    sample = data[:65536].splitlines()[:50]
    if len(sample) < 10:
        return 0
    for sep in (b",", b"\t", b";", b"|"):
        counts = [line.count(sep) for line in sample[:-1] if line.strip()]
        if counts and min(counts) >= 2 and max(counts) == min(counts):
            if any(b"(" in line and b")" in line for line in sample[1:6]) and sep == b",":
                continue  # code with argument lists, not a table
            return data.count(b"\n") + (0 if data.endswith(b"\n") else 1) - 1
    return 0


# -- notebooks ---------------------------------------------------------------------------


def notebook_outputs(data: bytes) -> list[tuple[int, str]]:
    """``(cell number, what)`` for each code cell whose outputs hold data: tables, plots,
    long printed text. Raises ``ValueError`` for a file that is not a notebook."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no cells)")
    found = []
    for number, cell in enumerate(doc["cells"], 1):
        if not isinstance(cell, dict) or not isinstance(cell.get("outputs"), list):
            continue
        kinds: list[str] = []
        for out in cell["outputs"]:
            if not isinstance(out, dict):
                continue
            got = out.get("data")
            bundle: dict[str, object] = got if isinstance(got, dict) else {}
            html = _joined(bundle.get("text/html", ""))
            if "<table" in html:
                kinds.append("an HTML table")
            if any(k.startswith("image/") for k in bundle):
                kinds.append("a plot or image")
            if any(k in bundle for k in ("application/vnd.dataresource+json", "application/json")):
                kinds.append("JSON data")
            text = _joined(bundle.get("text/plain", "")) + _joined(out.get("text", ""))
            if text.count("\n") >= 20 or len(text) >= 2000:
                kinds.append(f"{text.count(chr(10)) + 1} lines of printed output")
        if kinds:
            found.append((number, ", ".join(dict.fromkeys(kinds))))
    return found


def _joined(value: object) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


# -- image metadata ----------------------------------------------------------------------

_AUTHOR_TAGS = {315: "Artist", 33432: "Copyright", 40093: "XPAuthor", 316: "HostComputer"}


def image_metadata(data: bytes) -> list[tuple[Severity, str, str]]:
    """``(severity, what, value)`` for GPS position, camera and author in an image's
    EXIF, PNG text chunks and XMP. Pixels are never decoded."""
    import io

    from PIL import Image

    found: list[tuple[Severity, str, str]] = []
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        gps = exif.get_ifd(0x8825) if exif else {}
        if gps and (2 in gps or 4 in gps):
            found.append((Severity.HIGH, "GPS position", _gps(gps)))
        camera = " ".join(str(exif.get(t, "")).strip("\0 ") for t in (271, 272)).strip()
        if camera:
            found.append((Severity.LOW, "camera", camera[:80]))
        for tag, label in _AUTHOR_TAGS.items():
            value = exif.get(tag)
            if isinstance(value, bytes):
                value = value.decode("utf-16-le", errors="replace")
            if value and str(value).strip("\0 "):
                found.append((Severity.MEDIUM, label, str(value).strip("\0 ")[:80]))
        info = image.info
        for key in ("Author", "Artist", "Creator", "Copyright", "Comment"):
            value = info.get(key)
            if isinstance(value, str) and value.strip():
                severity = Severity.LOW if key == "Comment" else Severity.MEDIUM
                found.append((severity, f"PNG text {key}", value.strip()[:80]))
        xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or b""
        text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
        creator = re.search(r"<dc:creator>.*?<rdf:li[^>]*>([^<]+)</rdf:li>", text, re.S)
        if creator:
            found.append((Severity.MEDIUM, "XMP creator", creator.group(1).strip()[:80]))
        if "exif:GPSLatitude" in text:
            found.append((Severity.HIGH, "XMP GPS position", "exif:GPSLatitude"))
    return found


def image_text(data: bytes) -> str:
    """Every text value of an image's EXIF, PNG text chunks and XMP, one per line."""
    import io

    from PIL import Image

    values: list[str] = []
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        for value in exif.values() if exif else ():
            if isinstance(value, bytes):
                value = value.decode("utf-16-le" if b"\x00" in value else "latin-1", "replace")
            if isinstance(value, str):
                values.append(value.strip("\0 "))
        for value in image.info.values():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                values.append(value)
    return "\n".join(v for v in values if v)


def _gps(gps: dict[int, object]) -> str:
    def degrees(value: object) -> float | None:
        try:
            d, m, s = (float(v) for v in value)  # type: ignore[attr-defined]
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return d + m / 60 + s / 3600

    lat, lon = degrees(gps.get(2)), degrees(gps.get(4))
    if lat is None or lon is None:
        return "coordinates present"
    lat *= -1 if gps.get(1) == "S" else 1
    lon *= -1 if gps.get(3) == "W" else 1
    return f"{lat:.4f}, {lon:.4f}"


# -- base64 ------------------------------------------------------------------------------

_B64_RUN = re.compile(r"(?:[A-Za-z0-9+/]{4}){100,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_B64_URLSAFE = re.compile(r"(?:[A-Za-z0-9_\-]{4}){100,}(?:[A-Za-z0-9_\-]{2,3})?={0,2}")
_B64_BLOCK = re.compile(
    r"(?:^[ \t]*[\"']?[A-Za-z0-9+/]{48,100}={0,2}[\"']?,?[ \t]*\r?\n){6,}", re.M
)


_HEX_RUN = re.compile(
    r"(?<![0-9A-Fa-f])(?:[0-9a-f]{2}){512,}(?![0-9A-Fa-f])|(?<![0-9A-Fa-f])(?:[0-9A-F]{2}){512,}(?![0-9A-Fa-f])"
)


def hex_blobs(text: str) -> Iterator[tuple[int, bytes]]:
    """``(offset, decoded bytes)`` for each run of 1,024+ hex digits in ``text``."""
    for match in _HEX_RUN.finditer(text):
        yield match.start(), bytes.fromhex(match.group(0))


def base64_blobs(text: str) -> Iterator[tuple[int, bytes, bool]]:
    """``(offset, decoded bytes, media)`` for each long base64 run or block in ``text``;
    ``media`` when it decodes to an image, font, or other plain media (or sits in a PEM
    armour or a ``data:image`` URI)."""
    seen: set[int] = set()
    for pattern in (_B64_BLOCK, _B64_RUN, _B64_URLSAFE):
        for match in pattern.finditer(text):
            start = match.start()
            if any(abs(start - s) < 200 for s in seen):
                continue
            raw = re.sub(r"[\s\"',]", "", match.group(0))
            try:
                if pattern is _B64_URLSAFE:
                    if "-" not in raw and "_" not in raw:
                        continue
                    decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
                else:
                    decoded = base64.b64decode(raw + "=" * (-len(raw) % 4))
            except (binascii.Error, ValueError):
                continue
            seen.add(start)
            before = text[max(0, start - 60) : start]
            media = (
                decoded.startswith(MEDIA)
                or "-----BEGIN" in before
                or re.search(r"data:(image|font|audio|video)/", before) is not None
                or "sourceMappingURL" in before
            )
            yield start, decoded, media


# -- text --------------------------------------------------------------------------------

_RESERVED_SUFFIXES = (
    "internal",
    "corp",
    "intranet",
    "intra",
    "lan",
    "local",
    "localdomain",
    "private",
    "home.arpa",
)
_HOST = re.compile(
    r"(?<![\w.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:"
    + "|".join(re.escape(s) for s in _RESERVED_SUFFIXES)
    + r"))(?![\w-]|\.[a-z0-9])",
    re.IGNORECASE,
)
_INNER_LABEL = re.compile(
    r"(?<![\w.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:internal|corp|intranet|intra|"
    r"private|priv|lan)\.(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z]{2,24})(?![\w-]|\.[a-z0-9])",
    re.IGNORECASE,
)
_PUBLIC_INTERNAL = (
    "metadata.google.internal",
    "host.docker.internal",
    "gateway.docker.internal",
    "kubernetes.default.svc.cluster.local",
)
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_IPV6_ULA = re.compile(
    r"(?<![0-9a-f:])(f[cd][0-9a-f]{2}(?::[0-9a-f]{0,4}){3,7})(?![0-9a-f:])", re.I
)
_STORAGE = re.compile(
    r"\b((?:s3a?|s3n|gs|gcs|az|abfss?|wasbs?|hdfs|adl|oss|cos|r2|minio|swift|webhdfs)://"
    r"[A-Za-z0-9][\w.\-]*(?:/[^\s'\"<>)\]}`]*)?"
    r"|dbfs:/[^\s'\"<>)\]}`]+"
    r"|https?://[a-z0-9.\-]+\.s3[.\-](?:[a-z0-9\-]+\.)?amazonaws\.com[^\s'\"<>)]*"
    r"|https?://s3[.\-](?:[a-z0-9\-]+\.)?amazonaws\.com/[a-z0-9.\-]+[^\s'\"<>)]*"
    r"|https?://storage\.(?:googleapis|cloud\.google)\.com/[a-z0-9._\-]+[^\s'\"<>)]*"
    r"|https?://[a-z0-9]+\.(?:blob|dfs)\.core\.windows\.net[^\s'\"<>)]*)",
    re.IGNORECASE,
)
_TRACKING = re.compile(
    r"(MLFLOW_TRACKING_URI\s*[=:]\s*['\"]?[^\s'\"]+"
    r"|set_tracking_uri\(\s*['\"][^'\"]+['\"]"
    r"|https?://[^\s/'\"]*mlflow[^\s/'\"]*[^\s'\"<>)]*"
    r"|\bmlflow-artifacts:/[^\s'\"]+|\bruns:/[0-9a-f]{32}[^\s'\"]*|\bmodels:/[\w.\-]+/[\w.\-]+"
    r"|databricks://[^\s'\"]+"
    r"|https?://(?:api\.)?wandb\.ai/[\w.\-]+/[\w.\-]+[^\s'\"<>)]*"
    r"|\bWANDB_(?:ENTITY|PROJECT|BASE_URL)\s*[=:]\s*['\"]?[^\s'\"]+"
    r"|wandb\.init\([^)]*?\b(?:entity|project)\s*=\s*['\"][^'\"]+['\"]"
    r"|https?://(?:app\.)?neptune\.ai/[\w.\-]+/[\w.\-]+"
    r"|https?://(?:www\.)?comet\.(?:com|ml)/[\w.\-]+/[\w.\-]+)",
    re.IGNORECASE,
)
_PATH = re.compile(
    r"((?<![\w.])/home/([a-z_][\w.\-]{0,31})/[^\s'\"<>:]*"
    r"|(?<![\w.])/Users/([A-Za-z][\w.\-]{0,63})/[^\s'\"<>:]*"
    r"|\b[A-Za-z]:\\{1,2}Users\\{1,2}([\w.\-]{1,64})\\[^\s'\"<>]*"
    r"|(?<![\w.])/(?:mnt|nfs|gpfs|lustre|scratch)/[\w.\-]+/[^\s'\"<>:]*)"
)
_PLACEHOLDER_USERS = frozenset(
    [
        "user",
        "username",
        "users",
        "you",
        "me",
        "name",
        "yourname",
        "your_name",
        "your-name",
        "runner",
        "runneradmin",
        "jovyan",
        "ubuntu",
        "ec2-user",
        "root",
        "admin",
        "vagrant",
        "travis",
        "circleci",
        "appveyor",
        "docker",
        "app",
        "www-data",
        "shared",
        "public",
        "default",
        "guest",
        "nobody",
        "example",
        "foo",
        "bar",
        "test",
        "john",
        "jane",
        "alice",
        "bob",
        "someone",
        "$user",
        "<user>",
        "{user}",
        "xxx",
    ]
)
_PLACEHOLDER_NAMES = re.compile(
    r"^(?:my|your|some|the|example|sample|demo|dummy|fake|test|foo|bar|baz|bucket|container|"
    r"account|project|entity|path|name|xxx+|<[^>]*>|\{[^}]*\}|\$\{?[^}]*\}?|\*)"
    r"(?:[-_.]?(?:bucket|container|account|project|entity|name|data|path|org|team|\d+))?$",
    re.IGNORECASE,
)
_HYPER_KEYS = frozenset(
    [
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "n_layer",
        "n_head",
        "n_embd",
        "n_positions",
        "d_model",
        "d_ff",
        "num_layers",
        "num_heads",
        "hidden_dim",
        "hidden_units",
        "hidden_layer_sizes",
        "embedding_dim",
        "embed_dim",
        "learning_rate",
        "lr",
        "batch_size",
        "epochs",
        "num_epochs",
        "max_epochs",
        "dropout",
        "weight_decay",
        "momentum",
        "optimizer",
        "activation",
        "architectures",
        "model_type",
        "max_position_embeddings",
        "kernel_size",
        "num_classes",
        "num_labels",
        "warmup_steps",
        "backbone",
        "input_shape",
        "layers",
        "units",
        "filters",
        "n_estimators",
        "max_depth",
        "num_leaves",
        "gamma",
        "lr_scheduler",
        "label_smoothing",
        "attention_dropout",
        "hidden_act",
        "initializer_range",
        "layer_norm_eps",
    ]
)
_CONFIG_SUFFIXES = frozenset(
    [
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".cfg",
        ".ini",
        ".conf",
        ".config",
        ".hparams",
        ".txt",
        ".properties",
        ".env",
    ]
)
_KEY = re.compile(r"[\"']?\b([A-Za-z_][A-Za-z0-9_]*)\b[\"']?\s*[:=]")


@dataclass
class Detector:
    """Runs the text checks with the policy's terms and internal domains compiled once."""

    settings: ReleaseSettings

    @cached_property
    def terms(self) -> list[tuple[str, re.Pattern[str]]]:
        out = []
        for term in self.settings.terms:
            words = [re.escape(w) for w in re.split(r"[\W_]+", term) if w]
            if not words:
                continue
            body = r"[\W_]*".join(words)
            out.append((term, re.compile(rf"(?<![A-Za-z0-9]){body}(?:s|es)?(?![A-Za-z0-9])", re.I)))
        return out

    @cached_property
    def domains(self) -> re.Pattern[str] | None:
        if not self.settings.internal_domains:
            return None
        names = "|".join(re.escape(d.lower().lstrip(".")) for d in self.settings.internal_domains)
        return re.compile(
            rf"(?<![\w.\-])((?:[a-z0-9\-]+\.)*(?:{names}))(?![\w\-]|\.[a-z0-9])", re.I
        )

    def text(self, item: Item, text: str, is_text: bool) -> Iterator[ReleaseFinding]:
        """Hosts, addresses, storage and tracking URIs, local paths and listed terms."""
        lines = _LineIndex(text)
        suffix = PurePosixPath(item.name).suffix.lower()
        loose = suffix in _CONFIG_SUFFIXES or suffix == ".ipynb" or "." not in item.name

        def found(
            rule: str, severity: Severity, message: str, match: str, offset: int
        ) -> ReleaseFinding:
            return ReleaseFinding(
                rule, severity, item.path, message, match, lines.line(offset) if is_text else None
            )

        seen: set[tuple[str, str]] = set()

        def once(rule: str, match: str) -> bool:
            key = (rule, match.lower())
            if key in seen:
                return False
            seen.add(key)
            return True

        for m in _HOST.finditer(text):
            host = m.group(1).lower()
            if host in _PUBLIC_INTERNAL or host.endswith(_PUBLIC_INTERNAL):
                continue
            first = host.split(".")[0]
            labels = host.count(".")
            context = text[max(0, m.start() - 3) : m.start()]
            after = text[m.end() : m.end() + 1]
            # in code, "a.b.internal" is as often a module path (google.protobuf.internal):
            # there a host needs a URL, an @, a port or a host-like label; in configs two
            # labels are enough
            hostlike = (
                re.search(r"[\d-]", first) is not None
                or context.endswith(("://", "@"))
                or re.match(r":\d", after) is not None  # a port, not `if self.private:`
                or (labels >= 2 and loose)
            )
            if not hostlike or _PLACEHOLDER_NAMES.match(first) or not once("internal-host", host):
                continue
            yield found(
                "internal-host", Severity.MEDIUM, f"internal host name {host}", host, m.start()
            )
        for m in _INNER_LABEL.finditer(text):
            host = m.group(1).lower()
            context = text[max(0, m.start() - 3) : m.start()]
            after = text[m.end() : m.end() + 2]
            hostlike = (
                loose or context.endswith(("://", "@")) or re.match(r":\d", after) is not None
            )
            if (
                hostlike
                and not _PLACEHOLDER_NAMES.match(host.split(".")[0])
                and once("internal-host", host)
            ):
                yield found(
                    "internal-host", Severity.MEDIUM, f"internal host name {host}", host, m.start()
                )
        if self.domains is not None:
            for m in self.domains.finditer(text):
                host = m.group(1).lower()
                if once("internal-host", host):
                    yield found(
                        "internal-host",
                        Severity.MEDIUM,
                        f"host in the organisation's domain: {host}",
                        host,
                        m.start(),
                    )
        for m in _IPV4.finditer(text):
            octets = [int(g) for g in m.groups()]
            if any(o > 255 for o in octets) or not _private(octets):
                continue
            before = text[max(0, m.start() - 12) : m.start()].lower()
            if "version" in before or before.rstrip().endswith(("v", "==", ">=", "<=")):
                continue
            address = m.group(0)
            if not loose and _example_address(octets, text, m.start(), m.end()):
                continue
            if once("private-address", address):
                yield found(
                    "private-address",
                    Severity.MEDIUM,
                    f"private address {address}",
                    address,
                    m.start(),
                )
        for m in _IPV6_ULA.finditer(text):
            address = m.group(1)
            if address.count(":") >= 3 and once("private-address", address):
                yield found(
                    "private-address",
                    Severity.MEDIUM,
                    f"private IPv6 address {address}",
                    address,
                    m.start(),
                )
        for m in _STORAGE.finditer(text):
            uri = m.group(1).rstrip(".,;")
            bucket = re.sub(r"^[a-z0-9]+:/+", "", uri, flags=re.I).split("/")[0].split(".")[0]
            if uri.lower().startswith("http"):
                host = re.sub(r"^https?://", "", uri, flags=re.I)
                parts = host.split("/")
                bucket = (
                    parts[1]
                    if host.lower().startswith(("s3", "storage.")) and len(parts) > 1
                    else parts[0].split(".")[0]
                )
            if not bucket or _PLACEHOLDER_NAMES.match(bucket) or not once("storage-uri", uri):
                continue
            yield found(
                "storage-uri",
                Severity.MEDIUM,
                f"storage location {uri[:160]}",
                uri[:160],
                m.start(),
            )
        for m in _TRACKING.finditer(text):
            value = m.group(1)
            tail = re.split(r"[=:/(]", value.rstrip("'\")/"))[-1].strip("'\" ")
            if _PLACEHOLDER_NAMES.match(tail) or "localhost" in value or "127.0.0.1" in value:
                continue
            if once("tracking-uri", value):
                yield found(
                    "tracking-uri",
                    Severity.MEDIUM,
                    f"experiment tracking reference {value[:160]}",
                    value[:160],
                    m.start(),
                )
        for m in _PATH.finditer(text):
            path = m.group(1)
            user = next((g for g in m.groups()[1:] if g), "")
            if user and (user.lower() in _PLACEHOLDER_USERS or _PLACEHOLDER_NAMES.match(user)):
                continue
            key = path if not user else path.split(user)[0] + user
            if once("local-path", key):
                yield found("local-path", Severity.LOW, f"local path {path[:160]}", key, m.start())
        yield from self.term_hits(item, text, lines if is_text else None)
        if is_text and ("<" in text[:4096]) and self.terms:
            # markup splits words across tags (<w:t>Project</w:t><w:t>Bluebird</w:t>)
            bare = _TAG.sub(" ", text)
            found_terms = {t for t, p in self.terms if p.search(text)}
            for hit in self.term_hits(item, bare):
                if hit.match not in found_terms:
                    yield hit

    def term_hits(
        self, item: Item, text: str, lines: _LineIndex | None = None
    ) -> Iterator[ReleaseFinding]:
        for term, pattern in self.terms:
            m = pattern.search(text)
            if m:
                line = lines.line(m.start()) if lines else None
                shown = re.sub(r"\s+", " ", m.group(0))
                yield ReleaseFinding(
                    "policy-term",
                    Severity.HIGH,
                    item.path,
                    f"'{shown}' matches the policy term '{term}'",
                    term,
                    line,
                )

    def ml_config(self, item: Item, text: str) -> ReleaseFinding | None:
        suffix = PurePosixPath(item.name).suffix.lower()
        if suffix not in _CONFIG_SUFFIXES and "." in item.name:
            return None
        if item.name in ("package.json", "package-lock.json", "tsconfig.json", "composer.json"):
            return None
        keys = {k.lower() for k in _KEY.findall(text[: 1 << 20])} & _HYPER_KEYS
        if (
            re.search(r"\"class_name\"\s*:\s*\"(?:Sequential|Functional|Model)\"", text)
            and "layers" in text
        ):
            keys |= {"keras model topology"}
        strong = keys & {
            "architectures",
            "model_type",
            "keras model topology",
            "hidden_size",
            "n_layer",
            "d_model",
            "num_hidden_layers",
            "hidden_layer_sizes",
        }
        if len(keys) >= 4 or (strong and len(keys) >= 2):
            shown = ", ".join(sorted(keys)[:8])
            return ReleaseFinding(
                "ml-config",
                Severity.MEDIUM,
                item.path,
                f"model architecture / training settings ({shown})",
                "config",
            )
        return None


def _example_address(o: list[int], text: str, start: int, end: int) -> bool:
    """In code and docs, the addresses every tutorial uses (192.168.0.x, 192.168.1.x,
    10.0.0.x, 172.16.0.x) and network addresses in CIDR notation are examples, unless a
    URL, a user or a port says they are a real endpoint."""
    before, after = text[max(0, start - 3) : start], text[end : end + 2]
    endpoint = before.endswith(("://", "@")) or re.match(r":\d", after) is not None
    if endpoint:
        return False
    favourite = (
        (o[0] == 192 and o[1] == 168 and o[2] in (0, 1))
        or (o[0] == 10 and o[1] == 0 and o[2] == 0)
        or (o[0] == 172 and o[1] == 16 and o[2] == 0)
    )
    return favourite or (o[3] == 0 and after.startswith("/"))


def _private(o: list[int]) -> bool:
    return (
        o[0] == 10
        or (o[0] == 172 and 16 <= o[1] <= 31)
        or (o[0] == 192 and o[1] == 168)
        or (o[0] == 100 and 64 <= o[1] <= 127)
    )


class _LineIndex:
    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        import bisect

        return bisect.bisect_right(self.starts, offset)
