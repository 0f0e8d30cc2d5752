"""Where a model folder names Python code that a mainstream loader imports.

Each function reads one kind of configuration the way its loader reads it (by
its own parser, never executing anything) and returns :class:`CodeRef` values:
which loader, the flag that makes it run the code, and the module files it
imports, relative to the folder the loader treats as the model's root.

* Transformers: ``auto_map`` in any of its configuration files (``config.json``,
  ``tokenizer_config.json``, processor, feature-extractor, image- and
  video-processor and generation configs; any JSON file with the key, since a
  path to the file may be given directly), including references to code in
  another repository (``org/repo--module.Class``) and ``custom_pipelines``.
* Diffusers: ``model_index.json`` naming a custom pipeline (``_class_name`` as
  ``[module, class]``) or custom components (``[module, class]`` with
  ``<component>/<module>.py`` in the folder).
* sentence-transformers: ``modules.json`` entries whose ``type`` is not one of
  the library's own modules (imported from the folder without any flag when
  the folder is local).
* TorchServe: ``MAR-INF/MANIFEST.json`` handler, model file and requirements.
* MLflow: ``MLmodel`` whose ``python_function`` flavour names a loader module or
  a ``code`` directory.
* Triton Inference Server: ``config.pbtxt`` selecting the Python backend.

>>> refs = references("config.json", b'{"auto_map": {"AutoModel": "modeling_x.XModel"}}')
>>> [(r.loader, r.flag, r.entries[0].shown) for r in refs]
[('transformers AutoModel.from_pretrained', 'trust_remote_code=True', 'modeling_x.py (XModel)')]
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["MAX_CONFIG_BYTES", "CodeRef", "Entry", "is_candidate", "references"]

MAX_CONFIG_BYTES = 16 << 20
"""Configuration files larger than this are not parsed for code references."""

_MAX_NODES = 200_000  # values visited in one parsed document (YAML aliases, deep JSON)
_TRUST = "trust_remote_code=True"
# Cheap tests before parsing: a configuration without any of these names no code.
_OBJECT_MARKERS = (
    b'"auto_map"',
    b'"custom_pipelines"',
    b'"_class_name"',
    b'"handler"',
    b'"modelFile"',
)
_TEXT_MARKERS = (b"flavors", b"backend")
_CLASS_REF = re.compile(r"(?:(?P<repo>[^\s/]+/[^\s/]+?)--)?(?P<module>[\w.\-]+)\.(?P<cls>\w+)\Z")
_DIFFUSERS_LIBRARIES = frozenset({"diffusers", "transformers", "onnxruntime.training"})
_TORCHSERVE_BUILTIN = frozenset(
    {
        "base_handler",
        "image_classifier",
        "image_segmenter",
        "object_detector",
        "text_classifier",
        "vision_handler",
        "text_handler",
        "densenet_handler",
        "unet_handler",
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One piece of code a loader imports.

    ``patterns`` are regular expressions matched against paths relative to the
    reference's root; the first file matching any of them is the code. ``remote``
    names another repository the loader fetches it from; ``installed`` says the
    loader imports it from the installed packages when no file matches;
    ``optional`` that nothing runs when no file matches.
    """

    shown: str
    patterns: tuple[str, ...] = ()
    remote: str | None = None
    installed: bool = False
    optional: bool = False


@dataclass(frozen=True, slots=True)
class CodeRef:
    """A configuration that makes ``loader`` import code when ``flag`` is given."""

    config: str  # path of the configuration within its tree
    root: str  # the model's root, relative to the configuration's directory
    loader: str
    flag: str
    entries: tuple[Entry, ...] = ()


def _refs(name: str, loader: str, flag: str, entries: list[Entry], root: str = "") -> list[CodeRef]:
    """One reference of ``loader`` when it names any code, else none."""
    if not entries:
        return []
    return [CodeRef(config=name, root=root, loader=loader, flag=flag, entries=tuple(entries))]


def _file(path: str) -> str:
    return re.escape(path)


def _module_files(module: str, prefix: str = "") -> tuple[str, ...]:
    """The files a dynamic-module loader reads for ``module``: ``a.b`` -> ``a.b.py``, ``a/b.py``."""
    out = [_file(prefix + module + ".py")]
    if "." in module:
        out.append(_file(prefix + module.replace(".", "/") + ".py"))
    out.append(_file(prefix + module.replace(".", "/") + "/__init__.py"))
    return tuple(dict.fromkeys(out))


def is_candidate(head: bytes) -> bool:
    """True when a file starting with ``head`` may be a configuration worth parsing."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return True
    return b"flavors" in head or b"backend" in head or b"platform" in head


def references(name: str, data: bytes) -> list[CodeRef]:
    """Code references in the configuration ``data`` found at path ``name`` of its tree."""
    if len(data) > MAX_CONFIG_BYTES:
        return []
    first = data.lstrip(b" \t\r\n")[:1]
    markers = {b"{": _OBJECT_MARKERS, b"[": (b'"type"',)}.get(first, _TEXT_MARKERS)
    if not any(m in data for m in markers):
        return []
    base = posixpath.basename(name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []  # every loader here reads its configuration as UTF-8
    if first in (b"{", b"["):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return []  # the loader's json.load fails the same way: nothing runs
        return _from_json(name, base, doc)
    if base == "MLmodel" or "flavors" in text:
        return _mlflow(name, text)
    if base == "config.pbtxt" or "backend" in text or "platform" in text:
        return _triton(name, text)
    return []


def _from_json(name: str, base: str, doc: object) -> list[CodeRef]:
    refs: list[CodeRef] = []
    if isinstance(doc, dict):
        refs += _auto_maps(name, base, doc)
        refs += _custom_pipelines(name, doc)
        refs += _diffusers(name, doc)
        refs += _torchserve(name, doc)
    elif isinstance(doc, list):
        refs += _sentence_transformers(name, doc)
    return refs


# --------------------------------------------------------------------------- Transformers
_AUTO_BY_FILE = {
    "tokenizer_config.json": "AutoTokenizer",
    "preprocessor_config.json": "AutoProcessor",
    "processor_config.json": "AutoProcessor",
    "feature_extractor_config.json": "AutoFeatureExtractor",
    "image_processor_config.json": "AutoImageProcessor",
    "video_preprocessor_config.json": "AutoVideoProcessor",
    "generation_config.json": "GenerationConfig",
}


def _walk(doc: object, depth: int = 0) -> Iterator[dict[str, object]]:
    """Every JSON object in ``doc`` (bounded depth and count)."""
    stack: list[tuple[object, int]] = [(doc, depth)]
    visited = 0
    while stack and visited < _MAX_NODES:
        value, d = stack.pop()
        visited += 1
        if isinstance(value, dict):
            yield value
            if d < 6:
                stack.extend((v, d + 1) for v in value.values())
        elif isinstance(value, list) and d < 6:
            stack.extend((v, d + 1) for v in value[:10_000])


def _strings(value: object) -> Iterator[tuple[str | None, str]]:
    """``(auto class, reference)`` pairs of an ``auto_map`` value, whatever its shape."""
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, list):
        for item in value[:64]:
            for _key, ref in _strings(item):
                yield None, ref
    elif isinstance(value, dict):
        for key, item in list(value.items())[:256]:
            for _key, ref in _strings(item):
                yield str(key), ref


def _class_entry(ref: str, prefix: str = "") -> Entry:
    m = _CLASS_REF.match(ref.strip())
    if m is None:
        # the loader cannot split it into a file and a class either, but say so
        return Entry(shown=ref[:200], patterns=(), optional=False)
    module, cls = m["module"], m["cls"]
    if m["repo"]:
        return Entry(shown=f"{m['repo']}--{module}.{cls}", remote=m["repo"])
    return Entry(shown=f"{module}.py ({cls})", patterns=_module_files(module, prefix))


def _auto_maps(name: str, base: str, doc: dict[str, object]) -> list[CodeRef]:
    refs: list[CodeRef] = []
    for obj in _walk(doc):
        auto_map = obj.get("auto_map")
        if auto_map is None:
            continue
        classes: dict[str, None] = {}
        entries: dict[str, Entry] = {}
        for key, ref in _strings(auto_map):
            cls = key or _AUTO_BY_FILE.get(base, "AutoTokenizer")
            classes[cls] = None
            entry = _class_entry(ref)
            entries.setdefault(entry.shown, entry)
        if not entries:
            continue
        loader = ", ".join(list(classes)[:6]) + (", ..." if len(classes) > 6 else "")
        refs.append(
            CodeRef(
                config=name,
                root="",
                loader=f"transformers {loader}.from_pretrained",
                flag=_TRUST,
                entries=tuple(entries.values()),
            )
        )
    return refs


def _custom_pipelines(name: str, doc: dict[str, object]) -> list[CodeRef]:
    pipelines = doc.get("custom_pipelines")
    if not isinstance(pipelines, dict):
        return []
    entries: dict[str, Entry] = {}
    for task in list(pipelines.values())[:256]:
        impl = task.get("impl") if isinstance(task, dict) else None
        if isinstance(impl, str):
            entry = _class_entry(impl)
            entries.setdefault(entry.shown, entry)
    return _refs(name, "transformers pipeline()", _TRUST, list(entries.values()))


# --------------------------------------------------------------------------- Diffusers
def _diffusers(name: str, doc: dict[str, object]) -> list[CodeRef]:
    if "_class_name" not in doc or not any(
        k.startswith("_diffusers") for k in doc if isinstance(k, str)
    ):
        return []
    entries: list[Entry] = []
    cls_name = doc.get("_class_name")
    if isinstance(cls_name, list) and len(cls_name) == 2 and isinstance(cls_name[0], str):
        entries.append(
            Entry(
                shown=f"{cls_name[0]}.py ({cls_name[1]})",
                patterns=_module_files(cls_name[0]),
            )
        )
    for component, value in doc.items():
        if component.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, cls = value
        if not isinstance(library, str) or library in _DIFFUSERS_LIBRARIES:
            continue
        # diffusers loads <component>/<library>.py when the folder has it
        entries.append(
            Entry(
                shown=f"{component}/{library}.py ({cls})",
                patterns=(_file(f"{component}/{library}.py"),),
                optional=True,
            )
        )
    return _refs(name, "diffusers DiffusionPipeline.from_pretrained", _TRUST, entries)


# --------------------------------------------------------------------------- sentence-transformers
def _sentence_transformers(name: str, doc: list[object]) -> list[CodeRef]:
    entries: list[Entry] = []
    for item in doc[:1000]:
        if not isinstance(item, dict):
            return []  # not a modules.json
        kind = item.get("type")
        if not isinstance(kind, str) or "path" not in item:
            return []
        if kind.startswith("sentence_transformers."):
            continue
        entry = _class_entry(kind)
        entries.append(
            Entry(entry.shown, entry.patterns, entry.remote, installed=entry.remote is None)
        )
    return _refs(
        name,
        "sentence_transformers SentenceTransformer()",
        "none for a local folder (trust_remote_code=True when loaded from the Hub)",
        entries,
    )


# --------------------------------------------------------------------------- TorchServe
def _torchserve(name: str, doc: dict[str, object]) -> list[CodeRef]:
    model = doc.get("model")
    if not isinstance(model, dict) or not any(
        k in model for k in ("handler", "modelFile", "serializedFile")
    ):
        return []
    parts = name.split("/")
    root = ".." if len(parts) >= 2 and parts[-2] == "MAR-INF" else ""
    entries: list[Entry] = []
    handler = model.get("handler")
    if isinstance(handler, str) and handler:
        module = handler.split(":", 1)[0]
        module = module[:-3] if module.endswith(".py") else module
        entries.append(
            Entry(
                shown=f"handler {handler}",
                patterns=_module_files(module) if module else (),
                installed=True,
                optional=posixpath.basename(module) in _TORCHSERVE_BUILTIN,
            )
        )
    for key, what in (("modelFile", "model file"), ("requirementsFile", "requirements")):
        value = model.get(key)
        if isinstance(value, str) and value:
            entries.append(Entry(shown=f"{what} {value}", patterns=(_file(value),)))
    return _refs(
        name,
        "TorchServe (torchserve --models <archive>)",
        "none: the server imports the handler when it loads the model",
        entries,
        root,
    )


# --------------------------------------------------------------------------- MLflow
def _mlflow(name: str, text: str) -> list[CodeRef]:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        return []
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    if not isinstance(pyfunc, dict):
        return []
    entries: list[Entry] = []
    code = pyfunc.get("code")
    prefix = f"{code.strip('/')}/" if isinstance(code, str) and code.strip("/") else ""
    loader_module = pyfunc.get("loader_module")
    if isinstance(loader_module, str) and not loader_module.startswith("mlflow."):
        entries.append(
            Entry(
                shown=f"loader_module {loader_module}",
                patterns=_module_files(loader_module, prefix),
                installed=True,
            )
        )
    if prefix:
        entries.append(Entry(shown=f"code directory {prefix}", patterns=(_file(prefix) + ".+",)))
    return _refs(
        name,
        "mlflow.pyfunc.load_model",
        "none: the code directory is put on sys.path and the loader module imported",
        entries,
    )


# --------------------------------------------------------------------------- Triton
_PBTXT_BACKEND = re.compile(r'^\s*backend\s*:\s*"python"', re.MULTILINE)
_PBTXT_FILE = re.compile(r'^\s*default_model_filename\s*:\s*"([^"\n]+)"', re.MULTILINE)


def _triton(name: str, text: str) -> list[CodeRef]:
    if not _PBTXT_BACKEND.search(text):
        return []
    m = _PBTXT_FILE.search(text)
    filename = m.group(1) if m else "model.py"
    entry = Entry(shown=f"<version>/{filename}", patterns=(r"\d+/" + _file(filename),))
    return _refs(
        name,
        "Triton Inference Server (Python backend)",
        "none: the server imports the model file when it loads the model",
        [entry],
    )
