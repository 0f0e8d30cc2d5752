"""Generated releases: one with planted items, clean ones of real shape.

The release gate's tests, its benchmark and the release lab build their
releases here. Nothing is read from disk or the network: each builder writes
a release under a directory it is given and returns what it planted, as
``(rule, path)``. Needs numpy, Pillow, onnx and scikit-learn (the ``all`` extra).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import pickle
import re
import struct
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def onnx_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 64])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 10])
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 10], np.zeros(640, np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])], "g", [x], [y], [w]
    )
    return bytes(onnx.helper.make_model(graph).SerializeToString())


def torch_zip() -> bytes:
    """The layout of ``torch.save`` (a zip with data.pkl and storages), written without torch."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("encoder/data.pkl", pickle.dumps({"weight": "storage 0"}, protocol=2))
        z.writestr("encoder/data/0", np.arange(256, dtype=np.float32).tobytes())
        z.writestr("encoder/version", "3\n")
    return buf.getvalue()


def tflite_model() -> bytes:
    return b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 8


def exif_jpeg(gps: bool = True) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (32, 32), (120, 30, 200))
    exif = Image.Exif()
    exif[271] = "Canon"
    exif[272] = "EOS 5D Mark IV"
    exif[315] = "Jane Researcher"
    if gps:
        exif[0x8825] = {1: "N", 2: (47.0, 22.0, 30.5), 3: "E", 4: (8.0, 32.0, 10.0)}
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def plain_png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def data_csv(rows: int = 300) -> str:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    lines = [",".join(f"p{i}" for i in range(64)) + ",label"]
    lines += [",".join(str(int(v)) for v in x[i]) + f",{y[i]}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def notebook_with_outputs() -> str:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Exploring the data"]},
        {
            "cell_type": "code",
            "execution_count": 1,
            "metadata": {},
            "source": ["df.head()"],
            "outputs": [
                {
                    "output_type": "execute_result",
                    "execution_count": 1,
                    "metadata": {},
                    "data": {
                        "text/html": ["<table><tr><td>0.1</td><td>7</td></tr></table>"],
                        "text/plain": ["   p0  label\n0  0.1  7"],
                    },
                }
            ],
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "source": ["x = 1"],
            "outputs": [],
        },
    ]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def clean_notebook() -> str:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Quick start"]},
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "source": ["import pkg"],
            "outputs": [],
        },
    ]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def wheel(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(
            "acme_client-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: acme-client\n"
        )
    return buf.getvalue()


TRAIN_YAML = """\
# training run for the digits classifier
data: s3://acme-ml-prod/training/digits-v3/
model:
  hidden_size: 256
  num_layers: 3
  dropout: 0.1
optimizer: adam
learning_rate: 0.0003
batch_size: 64
epochs: 40
"""


def planted_release(root: Path) -> list[tuple[str, str]]:
    """A repository carrying one item of every kind the gate looks for."""
    files: dict[str, bytes] = {
        "README.md": b"# acme digits\n\nA small demo.\n",
        "models/classifier.onnx": onnx_model(),
        "weights/encoder.pt": torch_zip(),
        "data/sample.csv": data_csv().encode(),
        "notebooks/explore.ipynb": notebook_with_outputs().encode(),
        "docs/team-photo.jpg": exif_jpeg(),
        "config/train.yaml": TRAIN_YAML.encode(),
        "dist/acme_client-1.0-py3-none-any.whl": wheel(
            {"acme_client/__init__.py": b"", "acme_client/model.tflite": tflite_model()}
        ),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return [
        ("model", "models/classifier.onnx"),
        ("model", "weights/encoder.pt"),
        ("dataset", "data/sample.csv"),
        ("notebook-output", "notebooks/explore.ipynb"),
        ("image-metadata", "docs/team-photo.jpg"),
        ("storage-uri", "config/train.yaml"),
        ("ml-config", "config/train.yaml"),
        ("bundled-model", "dist/acme_client-1.0-py3-none-any.whl!acme_client/model.tflite"),
    ]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def bury_in_history(root: Path, planted: list[tuple[str, str]]) -> None:
    """Commit the planted release, then delete every planted file in a second commit."""
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    for path in {re.split(r"[!#]", p)[0].rstrip("/") for _, p in planted}:
        git(root, "rm", "-q", "-r", path)
    git(root, "commit", "-q", "-m", "remove the data")


def clean_python_package(root: Path) -> None:
    """A Python package with tests, docs, CI and a lock file: nothing to find."""
    files = {
        "pyproject.toml": (
            '[project]\nname = "tidy"\nversion = "1.0.0"\ndependencies = ["numpy>=1.26"]\n'
        ),
        "README.md": (
            "# tidy\n\n![build](docs/badge.png)\n\nInstall: `pip install tidy`. Store results in "
            "`s3://my-bucket/results/` or `gs://your-bucket/`; run a local tracking server at "
            "http://localhost:5000 (`mlflow ui`). Example host: `api.example.com`, address "
            "192.0.2.10.\n"
        ),
        "src/tidy/__init__.py": (
            '"""Tidy tables."""\nimport threading\n\n_state = threading.local()\n'
            '__version__ = \'1.0.0\'\n\n\ndef load(path):\n    """Load ``path`` '
            '(e.g. /home/user/data.csv or C:\\\\Users\\\\you\\\\data.csv)."""\n'
            "    with open(path) as fh:\n        return fh.read()\n"
        ),
        "src/tidy/_proto.py": "from google.protobuf.internal import encoder  # noqa\n",
        "src/tidy/settings/local.py": "DEBUG = True\nSETTINGS = 'tidy.settings.local'\n",
        "tests/test_tidy.py": (
            "import tidy\n\n\ndef test_load(tmp_path):\n    p = tmp_path / 'a.csv'\n"
            "    p.write_text('a,b\\n1,2\\n')\n    assert tidy.load(p)\n"
        ),
        "tests/fixtures/small.csv": "a,b,c\n"
        + "".join(f"{i},{i * 2},{i * 3}\n" for i in range(20)),
        "docs/index.md": "# tidy\n\nSee the [API](api.md). Version 10.2.3 fixed a bug.\n",
        "docs/quickstart.ipynb": clean_notebook(),
        "docs/conf.py": (
            "project = 'tidy'\nextensions = ['sphinx.ext.autodoc']\nhtml_theme = 'alabaster'\n"
        ),
        ".github/workflows/ci.yml": (
            "name: ci\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
            "      - uses: actions/checkout@v4\n      - run: pip install -e . && pytest\n"
        ),
        "uv.lock": "".join(
            f'[[package]]\nname = "p{i}"\nversion = "1.{i}"\n'
            f'sdist = {{ hash = "sha256:{i:064x}" }}\n\n'
            for i in range(30)
        ),
        "CHANGELOG.md": "## 1.0.0\n\n- first release (thanks @alice)\n",
        "LICENSE": "MIT License\n\nCopyright (c) 2026 The tidy authors\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "docs/badge.png").write_bytes(plain_png(0))
    (root / "dist").mkdir()
    (root / "dist/tidy-1.0.0-py3-none-any.whl").write_bytes(
        wheel({"tidy/__init__.py": files["src/tidy/__init__.py"].encode()})
    )


def clean_web_app(root: Path) -> None:
    """A web app with images, styles, a bundle and an inline font: nothing to find."""
    import base64

    font = base64.b64encode(b"wOF2" + bytes(range(256)) * 20).decode()
    icon = base64.b64encode(plain_png(1)).decode()
    files = {
        "package.json": json.dumps(
            {
                "name": "gallery",
                "version": "2.1.0",
                "scripts": {"build": "vite build"},
                "dependencies": {"react": "^19.0.0"},
            },
            indent=2,
        ),
        "index.html": '<!doctype html><html><head><link rel="stylesheet" href="/style.css"></head>'
        '<body><div id="root"></div><script src="/src/main.js"></script></body></html>\n',
        "src/main.js": (
            "const API = import.meta.env.VITE_API ?? 'https://api.example.com';\n"
            "export async function load() { return (await fetch(`${API}/photos`)).json(); }\n"
        ),
        "public/style.css": (
            f"@font-face {{ font-family: Inter; src: url(data:font/woff2;base64,{font}); }}\n"
            f".logo {{ background: url(data:image/png;base64,{icon}); }}\n"
        ),
        "dist/assets/index-4f2a.js": "!function(){var e=document;" * 200 + "}();\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for i in range(40):
        (root / "public/images").mkdir(parents=True, exist_ok=True)
        (root / f"public/images/photo-{i:02d}.png").write_bytes(plain_png(10 + i))
    (root / "public/favicon.png").write_bytes(plain_png(99))


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def tgz_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(16)


def gguf() -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + bytes(64)


HIDDEN: dict[str, Callable[[], bytes]] = {
    # deeper nesting: a model in a zip in a tar.gz in a zip
    "bundle.zip": lambda: zip_of(
        {"inner/pack.tar.gz": tgz_of({"deep/model.safetensors": safetensors()})}
    ),
    # a model as base64 inside a JSON document
    "config/weights.json": lambda: json.dumps(
        {"weights_b64": base64.b64encode(onnx_model() * 2).decode()}
    ).encode(),
    # GGUF under a name that says nothing
    "blob.dat": gguf,
    # a pickle named .bin
    "pytorch_model.bin": lambda: __import__("pickle").dumps({"w": list(range(300))}, protocol=4),
    # an npm package with a model in it
    "web/acme-widget-1.0.0.tgz": lambda: tgz_of(
        {
            "package/package.json": b'{"name": "acme-widget"}',
            "package/dist/model.tflite": tflite_model(),
        }
    ),
    # an Android app: assets are in the APK
    "release/app.apk": lambda: zip_of(
        {
            "AndroidManifest.xml": b"\x03\x00\x08\x00",
            "assets/detector.tflite": tflite_model(),
        }
    ),
    # an iOS app bundle with a Core ML model
    "release/App.ipa": lambda: zip_of(
        {"Payload/App.app/Classifier.mlmodel": b"\x08\x04\x12\x10" + bytes(range(200))}
    ),
    # a Git LFS pointer to a checkpoint
    "checkpoints/last.ckpt": lambda: (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:"
        + b"ab" * 32
        + b"\nsize 734003200\n"
    ),
    # arrays and tables as data sets
    "data/features.npy": lambda: npy(np.zeros((300, 256), np.float32)),
    "data/events.parquet": lambda: b"PAR1" + bytes(300_000) + b"PAR1",
    "data/records.jsonl": lambda: b"".join(
        json.dumps({"id": i, "text": f"row {i}", "label": i % 3}).encode() + b"\n"
        for i in range(250)
    ),
    # a gzip-compressed CSV
    "data/train.csv.gz": lambda: gzip.compress(data_csv(250).encode()),
    # a Word document naming the project
    "docs/brief.docx": lambda: zip_of(
        {
            "word/document.xml": b"<w:document><w:t>Status of Project</w:t>"
            b"<w:t>Bluebird</w:t></w:document>"
        }
    ),
    # a term split over a line break in a comment
    "src/notes.py": lambda: b"# this belongs to project\n# bluebird, do not ship\nx = 1\n",
    # a Hugging Face config
    "hf/config.json": lambda: json.dumps(
        {
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
            "hidden_size": 768,
        }
    ).encode(),
    # W&B project and an internal host in a notebook's source
    "notebooks/train.ipynb": lambda: json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "source": [
                        "wandb.init(entity='acme-ml', project='digits-prod')\n",
                        "db = 'postgres://train@db01.ml.corp:5432/runs'",
                    ],
                    "outputs": [],
                }
            ],
            "nbformat": 4,
        }
    ).encode(),
    "docs/deploy.md": lambda: (
        b"Push to https://acmemodels.blob.core.windows.net/prod and ssh to /home/jdoe/run.sh\n"
    ),
    # a term in a file name
    "assets/bluebird-logo.svg": lambda: b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
    # an Excel workbook of records
    "data/customers.xlsx": lambda: zip_of(
        {
            "[Content_Types].xml": b"<Types/>",
            "xl/worksheets/sheet1.xml": b"<worksheet><sheetData>"
            + b"".join(b'<row r="%d"><c><v>%d</v></c></row>' % (i, i) for i in range(1, 260))
            + b"</sheetData></worksheet>",
        }
    ),
    # a model in a zstd-compressed tarball is not opened without zstandard: reported
    # as unexamined, never passed silently (see the tests)
    # a TensorFlow frozen graph
    "export/frozen_graph.pb": lambda: b"\n\x0f\n\x05input\x12\x0bPlaceholder" + bytes(64),
    # an internal host under the company's domain, in a YAML config
    "deploy/values.yaml": lambda: b"tracking:\n  host: mlflow.corp.acme-ai.com\n",
    # gradient-boosting and PMML models, by content
    "models/booster.json": lambda: json.dumps(
        {"learner": {"gradient_booster": {"name": "gbtree"}}, "version": [2, 0, 0]}
    ).encode(),
    "models/lgbm.txt": lambda: b"tree\nversion=v4\nnum_class=1\n" + b"Tree=0\n" * 50,
    "models/scorer.pmml": lambda: b'<?xml version="1.0"?>\n<PMML version="4.4"><Header/></PMML>\n',
    # a TensorFlow checkpoint shard
    "export/ckpt-100.index": lambda: bytes(range(256)) * 4,
    # a small NumPy archive named as weights
    "weights/layer_weights.npz": lambda: _npz({"w0": np.zeros((16, 8), np.float32)}),
    # records as a JSON array
    "data/records.json": lambda: json.dumps(
        [{"id": i, "age": 20 + i % 50, "label": i % 2} for i in range(250)]
    ).encode(),
    # a model as hex digits in a text file
    "blob/weights.hex": lambda: tflite_model().hex().encode() + b"\n",
    # a credential compiled into a binary
    "bin/helper.so": lambda: b"\x7fELF" + bytes(64) + b"AKIAZ7QXH3KD2PLM4WNB\x00" + bytes(64),
    # a PDF whose compressed page text names the project, kerned apart
    "docs/paper.pdf": lambda: _pdf(
        b"BT /F1 12 Tf 72 712 Td [(Results of Pro) -20 (ject Blue) 15 (bird)] TJ ET"
    ),
    # a term split by markup
    "site/about.html": lambda: (
        b"<html><body><p>Built by <b>Project</b> <i>Bluebird</i></p></body></html>"
    ),
    # client packages of other kinds: a Debian package, an RPM, an Electron app archive
    "dist/acme-ml_1.0_amd64.deb": lambda: _deb({"usr/share/acme/model.onnx": onnx_model()}),
    "dist/acme-ml-1.0.x86_64.rpm": lambda: _rpm(
        {"./usr/lib/acme/weights.safetensors": safetensors()}
    ),
    "app/resources/app.asar": lambda: _asar({"models/classifier.tflite": tflite_model()}),
    # a credential in a dotenv file
    "deploy/.env": lambda: b"AWS_ACCESS_KEY_ID=AKIAZ7QXH3KD2PLM4WNB\nREGION=eu-west-1\n",
}


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


HIDDEN_EXPECTED = {
    ("model", "bundle.zip!inner/pack.tar.gz!pack.tar!deep/model.safetensors"),
    ("model", "config/weights.json#base64@1"),
    ("model", "blob.dat"),
    ("model", "pytorch_model.bin"),
    ("bundled-model", "web/acme-widget-1.0.0.tgz!acme-widget-1.0.0.tar!package/dist/model.tflite"),
    ("bundled-model", "release/app.apk!assets/detector.tflite"),
    ("bundled-model", "release/App.ipa!Payload/App.app/Classifier.mlmodel"),
    ("model-pointer", "checkpoints/last.ckpt"),
    ("dataset", "data/features.npy"),
    ("dataset", "data/events.parquet"),
    ("dataset", "data/records.jsonl"),
    ("dataset", "data/train.csv.gz!train.csv"),
    ("policy-term", "docs/brief.docx!word/document.xml"),
    ("policy-term", "src/notes.py"),
    ("ml-config", "hf/config.json"),
    ("tracking-uri", "notebooks/train.ipynb"),
    ("internal-host", "notebooks/train.ipynb"),
    ("storage-uri", "docs/deploy.md"),
    ("local-path", "docs/deploy.md"),
    ("policy-term", "assets/bluebird-logo.svg"),
    ("credential", "deploy/.env"),
    ("dataset", "data/customers.xlsx!xl/worksheets/sheet1.xml"),
    ("model", "models/booster.json"),
    ("model", "models/lgbm.txt"),
    ("model", "models/scorer.pmml"),
    ("model", "export/ckpt-100.index"),
    ("model", "weights/layer_weights.npz"),
    ("dataset", "data/records.json"),
    ("model", "blob/weights.hex#hex@1"),
    ("credential", "bin/helper.so"),
    ("policy-term", "docs/paper.pdf"),
    ("bundled-model", "dist/acme-ml_1.0_amd64.deb!data.tar.gz!data.tar!usr/share/acme/model.onnx"),
    (
        "bundled-model",
        "dist/acme-ml-1.0.x86_64.rpm!payload!payload!usr/lib/acme/weights.safetensors",
    ),
    ("bundled-model", "app/resources/app.asar!models/classifier.tflite"),
    ("policy-term", "site/about.html"),
    ("dataset", "datasets/animals/"),
    ("policy-term", "photos/site.jpg"),
    ("model", "export/frozen_graph.pb"),
    ("internal-host", "deploy/values.yaml"),
}
HIDDEN_TERMS = ("Project Bluebird", "bluebird")


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) & 1 else b"")
    return out


def _deb(files: dict[str, bytes]) -> bytes:
    return _ar(
        {
            "debian-binary": b"2.0\n",
            "control.tar.gz": tgz_of({"control": b"Package: acme-ml\nVersion: 1.0\n"}),
            "data.tar.gz": tgz_of(files),
        }
    )


def _cpio_newc(files: dict[str, bytes]) -> bytes:
    out = b""
    entries = [*files.items(), ("TRAILER!!!", b"")]
    for number, (name, data) in enumerate(entries, 1):
        raw = name.encode() + b"\0"
        mode = 0o100644 if name != "TRAILER!!!" else 0
        fields = [number, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        out += header + raw
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


def _rpm(files: dict[str, bytes]) -> bytes:
    lead = b"\xed\xab\xee\xdb\x03\x00\x00\x00" + bytes(88)
    header = b"\x8e\xad\xe8\x01" + bytes(12)  # an empty header structure
    return lead + header + header + gzip.compress(_cpio_newc(files))


def _asar(files: dict[str, bytes]) -> bytes:
    tree: dict[str, Any] = {"files": {}}
    blob, offset = b"", 0
    for name, data in files.items():
        node = tree
        *folders, leaf = name.split("/")
        for folder in folders:
            node = node["files"].setdefault(folder, {"files": {}})
        node["files"][leaf] = {"offset": str(offset), "size": len(data)}
        blob += data
        offset += len(data)
    index = json.dumps(tree, separators=(",", ":")).encode()
    padded = index + b"\0" * (-len(index) % 4)
    header = struct.pack("<IIII", 4, len(padded) + 8, len(padded) + 4, len(index))
    return header + padded + blob


def _pdf(content: bytes) -> bytes:
    """A one-page PDF whose content stream is Flate-compressed."""
    import zlib

    stream = zlib.compress(content)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    body = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    for number, obj in enumerate(objects, 1):
        body += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    return body + b"trailer << /Root 1 0 R >>\n%%EOF\n"


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _tagged_jpeg(description: str) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (16, 16), (20, 120, 60))
    exif = Image.Exif()
    exif[270] = description  # ImageDescription
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def hidden_release(root: Path) -> list[tuple[str, str]]:
    """Items in other formats and hiding places than :func:`planted_release`: deeper
    nesting, base64, other model formats, client packages, LFS pointers, compressed
    data, Office files, terms across line breaks (with :data:`HIDDEN_TERMS`)."""
    for name, make in HIDDEN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(make())
    # an image data set in class folders, none of them 100 images alone
    for label in ("cat", "dog"):
        folder = root / "datasets" / "animals" / label
        folder.mkdir(parents=True)
        for i in range(60):
            (folder / f"{i:03d}.png").write_bytes(
                plain_png(1000 + i + (60 if label == "dog" else 0))
            )
    # a term in a photo's description
    (root / "photos").mkdir()
    (root / "photos" / "site.jpg").write_bytes(_tagged_jpeg("Test site of Project Bluebird"))
    return sorted(HIDDEN_EXPECTED)
