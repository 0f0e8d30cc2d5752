"""Model folders and archives whose configuration makes a loader import shipped code.

One sample per loader family (issue 12), laid out as its tools write it. The code is
inert (it defines classes); what matters is that a loader would import it. Used by
``tests/artifacts/formats/test_codefolders.py`` and ``bench/scan/precision.py``.

>>> import tempfile
>>> from pathlib import Path
>>> sorted(s.trick for s in build_code_folders(Path(tempfile.mkdtemp())))[:2]
['code-diffusers-custom-pipeline', 'code-mlflow-code-dir']
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from tests.corpus._build import MALICIOUS, Sample

__all__ = [
    "CONFIGURATION",
    "MODELING",
    "build_code_folders",
    "hf_folder",
    "js",
    "manifest",
    "mar_bytes",
]

MODELING = b"import torch\n\nclass XForCausalLM:\n    pass\n"
CONFIGURATION = b"from .helpers import thing\n\nclass XConfig:\n    pass\n"

Tree = dict[str, bytes]


def js(value: object) -> bytes:
    """JSON as the libraries write it."""
    return json.dumps(value, indent=2).encode()


def hf_folder(**extra: bytes) -> Tree:
    """A Hugging Face folder whose config.json maps Auto classes to its own modules."""
    return {
        "config.json": js(
            {
                "model_type": "x",
                "architectures": ["XForCausalLM"],
                "auto_map": {
                    "AutoConfig": "configuration_x.XConfig",
                    "AutoModelForCausalLM": "modeling_x.XForCausalLM",
                },
            }
        ),
        "configuration_x.py": CONFIGURATION,
        "modeling_x.py": MODELING,
        "helpers.py": b"thing = 1\n",
        "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
        "tokenizer.json": js({"model": {"type": "BPE", "vocab": {"a": 0}}}),
        **extra,
    }


def manifest(handler: str, **model: str) -> bytes:
    """A TorchServe MAR-INF/MANIFEST.json."""
    return js(
        {
            "createdOn": "01/01/2025 00:00:00",
            "runtime": "python",
            "model": {"modelName": "m", "serializedFile": "model.pt", "handler": handler, **model},
            "archiverVersion": "0.12.0",
        }
    )


def mar_bytes(handler: str, files: Tree, **model: str) -> bytes:
    """A TorchServe .mar archive (a zip) with ``files`` beside its manifest."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MAR-INF/MANIFEST.json", manifest(handler, **model))
        zf.writestr("model.pt", b"PK\x05\x06" + b"\x00" * 18)
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_tree(root: Path, tree: Tree) -> Path:
    """Write ``tree`` (path -> bytes) under ``root``."""
    for name, data in tree.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def build_code_folders(out: Path) -> list[Sample]:
    """One folder or archive per loader family, each naming code a loader imports."""
    d = out / "code-folders"
    trees: dict[str, Tree] = {
        "code-transformers-auto-map": hf_folder(),
        "code-transformers-tokenizer-remote": {
            "tokenizer_config.json": js(
                {"auto_map": {"AutoTokenizer": ["org/repo--tokenization_y.YTokenizer", None]}}
            )
        },
        "code-transformers-custom-pipeline": {
            "config.json": js({"custom_pipelines": {"pair": {"impl": "pipe.PairPipeline"}}}),
            "pipe.py": b"class PairPipeline: pass\n",
        },
        "code-diffusers-custom-pipeline": {
            "model_index.json": js(
                {"_class_name": ["pipeline_mine", "MyPipeline"], "_diffusers_version": "0.30.0"}
            ),
            "pipeline_mine.py": b"class MyPipeline: pass\n",
        },
        "code-sentence-transformers-module": {
            "modules.json": js([{"idx": 0, "name": "0", "path": "", "type": "custom_pool.Pool"}]),
            "custom_pool.py": b"class Pool: pass\n",
        },
        "code-mlflow-code-dir": {
            "MLmodel": b"flavors:\n  python_function:\n    loader_module: my_loader\n    code: code\n",
            "code/my_loader.py": b"def _load_pyfunc(path): pass\n",
        },
        "code-triton-python-backend": {
            "config.pbtxt": b'name: "m"\nbackend: "python"\n',
            "1/model.py": b"class TritonPythonModel: pass\n",
        },
    }
    samples = [
        Sample(write_tree(d / trick, tree), MALICIOUS, trick, "directory", "high", "code-folders")
        for trick, tree in trees.items()
    ]
    mar = d / "handler.mar"
    mar.parent.mkdir(parents=True, exist_ok=True)
    mar.write_bytes(mar_bytes("handler.py", {"handler.py": b"class Handler: pass\n"}))
    samples.append(Sample(mar, MALICIOUS, "code-torchserve-mar", "zip", "high", "code-folders"))
    return samples
