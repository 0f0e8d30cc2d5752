"""Model folders and archives that run code without any pickle (issue 12).

Every loader family is built here the way its tools lay it out, on disk and inside
archives (zip, ``.mar``, tar, tar.gz, a zip inside a tar). Each must give one
``model-code`` finding naming the loader, the flag and the files, ``high`` until its
digest is allowed; code that lives outside the scanned files cannot be allowed. Plain
configurations, weights and tokenizers stay clean.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import FileReport, Finding, Severity
from atlasguard.artifacts.formats._coderefs import references
from atlasguard.artifacts.formats.codefolders import CodeIndex, folder_digest
from atlasguard.artifacts.scan import scan_path
from tests.corpus.code_folders import (
    MODELING,
    build_code_folders,
    hf_folder,
    js,
    manifest,
    mar_bytes,
)
from tests.corpus.code_folders import write_tree as write

Tree = dict[str, bytes]


def code_findings(reports: list[FileReport]) -> list[Finding]:
    return [f for r in reports for f in r.findings if f.rule.startswith("model-code")]


def digest_of(finding: Finding) -> str:
    m = re.search(r"sha256:([0-9a-f]{64})", finding.message)
    assert m, finding.message
    return m.group(1)


# --------------------------------------------------------------------------- Transformers
def test_auto_map_folder_names_loader_flag_and_files(tmp_path: Path) -> None:
    write(tmp_path, hf_folder())
    (finding,) = code_findings(scan_path(tmp_path))
    assert finding.severity is Severity.HIGH
    assert finding.rule == "model-code"
    for text in (
        "transformers AutoConfig, AutoModelForCausalLM.from_pretrained",
        "trust_remote_code=True",
        "modeling_x.py (XForCausalLM)",
        "configuration_x.py (XConfig)",
        "helpers.py",
        "--allow sha256:",
    ):
        assert text in finding.message, text


def test_digest_is_the_documented_one_and_allows_exactly_that_code(tmp_path: Path) -> None:
    write(tmp_path, hf_folder())
    digest = digest_of(code_findings(scan_path(tmp_path))[0])
    files = {
        name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        for name in ("configuration_x.py", "helpers.py", "modeling_x.py")
    }
    expected = hashlib.sha256(
        "".join(f"{files[n]}  {n}\n" for n in sorted(files)).encode()
    ).hexdigest()
    assert digest == expected == folder_digest(files)
    (allowed,) = code_findings(scan_path(tmp_path, allow=[f"sha256:{digest}"]))
    assert allowed.severity is Severity.INFO and "allowed by digest" in allowed.message
    # any change to any code file, or a new one, needs a new review
    (tmp_path / "helpers.py").write_bytes(b"thing = __import__('os').system('id')\n")
    (again,) = code_findings(scan_path(tmp_path, allow=[f"sha256:{digest}"]))
    assert again.severity is Severity.HIGH and digest_of(again) != digest
    (tmp_path / "helpers.py").write_bytes(b"thing = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "extra.py").write_bytes(b"x = 1\n")
    assert (
        code_findings(scan_path(tmp_path, allow=[f"sha256:{digest}"]))[0].severity is Severity.HIGH
    )


@pytest.mark.parametrize(
    ("config_name", "config", "loader"),
    [
        (
            "tokenizer_config.json",
            {"auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}},
            "AutoTokenizer",
        ),
        (
            "tokenizer_config.json",
            {"auto_map": ["tokenization_x.XTokenizer", "tokenization_x.XTokenizerFast"]},
            "AutoTokenizer",
        ),
        (
            "preprocessor_config.json",
            {"auto_map": {"AutoImageProcessor": "tokenization_x.XProcessor"}},
            "AutoImageProcessor",
        ),
        (
            "processor_config.json",
            {"processor_class": "XProcessor", "auto_map": {"AutoProcessor": "tokenization_x.P"}},
            "AutoProcessor",
        ),
        (
            "generation_config.json",
            {"auto_map": {"AutoConfig": "tokenization_x.G"}},
            "AutoConfig",
        ),
        (
            "config.json",
            {"text_config": {"auto_map": {"AutoModel": "tokenization_x.Inner"}}},
            "AutoModel",
        ),
        (
            "config.json",
            {
                "custom_pipelines": {
                    "pair-classification": {"impl": "tokenization_x.Pipe", "pt": []}
                }
            },
            "transformers pipeline()",
        ),
        (
            "modular_config.json",
            {"auto_map": {"ModularPipelineBlocks": "tokenization_x.Block"}},
            "ModularPipelineBlocks",
        ),
    ],
)
def test_every_transformers_config_file_is_read(
    tmp_path: Path, config_name: str, config: object, loader: str
) -> None:
    write(tmp_path, {config_name: js(config), "tokenization_x.py": b"class X: pass\n"})
    (finding,) = code_findings(scan_path(tmp_path))
    assert finding.severity is Severity.HIGH and finding.rule == "model-code"
    assert loader in finding.message and "tokenization_x.py" in finding.message


def test_code_in_another_repository_cannot_be_allowed(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "tokenizer_config.json": js(
                {"auto_map": {"AutoTokenizer": ["org/repo--tokenization_y.YTokenizer", None]}}
            )
        },
    )
    (finding,) = code_findings(scan_path(tmp_path))
    assert finding.rule == "model-code-unpinned" and finding.severity is Severity.HIGH
    assert "org/repo" in finding.message and "sha256:" not in finding.message


def test_code_named_but_missing_cannot_be_allowed(tmp_path: Path) -> None:
    write(tmp_path, {"config.json": js({"auto_map": {"AutoModel": "modeling_gone.M"}})})
    (finding,) = code_findings(scan_path(tmp_path))
    assert finding.rule == "model-code-unpinned" and "not in this folder" in finding.message


def test_custom_generate_is_code_too(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"custom_generate/generate.py": b"def generate(model): pass\n", "config.json": js({})},
    )
    (finding,) = code_findings(scan_path(tmp_path))
    assert "custom_generate" in finding.message and finding.severity is Severity.HIGH


# --------------------------------------------------------------------------- other loaders
def test_diffusers_custom_pipeline_and_components(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "model_index.json": js(
                {
                    "_class_name": ["pipeline_mine", "MyPipeline"],
                    "_diffusers_version": "0.30.0",
                    "unet": ["diffusers", "UNet2DConditionModel"],
                    "text_encoder": ["transformers", "CLIPTextModel"],
                    "scheduler": ["scheduler_mine", "MyScheduler"],
                    "safety_checker": [None, None],
                }
            ),
            "pipeline_mine.py": b"class MyPipeline: pass\n",
            "scheduler/scheduler_mine.py": b"class MyScheduler: pass\n",
        },
    )
    (finding,) = code_findings(scan_path(tmp_path))
    assert "diffusers DiffusionPipeline.from_pretrained" in finding.message
    assert "pipeline_mine.py (MyPipeline)" in finding.message
    assert "scheduler/scheduler_mine.py (MyScheduler)" in finding.message


def test_sentence_transformers_custom_module_runs_without_a_flag(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "modules.json": js(
                [
                    {
                        "idx": 0,
                        "name": "0",
                        "path": "",
                        "type": "sentence_transformers.models.Transformer",
                    },
                    {"idx": 1, "name": "1", "path": "1_Pool", "type": "custom_pool.Pool"},
                ]
            ),
            "custom_pool.py": b"class Pool: pass\n",
        },
    )
    (finding,) = code_findings(scan_path(tmp_path))
    assert (
        "sentence_transformers" in finding.message and "none for a local folder" in finding.message
    )


def test_torchserve_archive_handler_and_model_file(tmp_path: Path) -> None:
    path = tmp_path / "m.mar"
    path.write_bytes(
        mar_bytes(
            "handler.py",
            {
                "handler.py": b"import os\n",
                "model.py": b"class Net: pass\n",
                "requirements.txt": b"evil\n",
            },
            modelFile="model.py",
            requirementsFile="requirements.txt",
        )
    )
    (finding,) = code_findings(scan_path(path))
    assert finding.location.member == "MAR-INF/MANIFEST.json"
    for text in (
        "TorchServe",
        "handler handler.py",
        "model file model.py",
        "requirements requirements.txt",
    ):
        assert text in finding.message
    digest = digest_of(finding)
    assert code_findings(scan_path(path, allow=[f"sha256:{digest}"]))[0].severity is Severity.INFO


def test_torchserve_builtin_handler_is_no_finding(tmp_path: Path) -> None:
    path = tmp_path / "m.mar"
    path.write_bytes(mar_bytes("image_classifier", {}))
    assert code_findings(scan_path(path)) == []


def test_torchserve_handler_from_the_installed_packages_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.mar"
    path.write_bytes(mar_bytes("pdb:run", {}))
    (finding,) = code_findings(scan_path(path))
    assert (
        finding.severity is Severity.HIGH
        and "handler pdb:run from the installed packages" in finding.message
    )


def test_torchserve_unpacked_model_store(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"MAR-INF/MANIFEST.json": manifest("my_handler:handle"), "my_handler.py": b"x = 1\n"},
    )
    (finding,) = code_findings(scan_path(tmp_path))
    assert "my_handler.py" in finding.message and "digest" in finding.message


def test_mlflow_code_directory_and_loader_module(tmp_path: Path) -> None:
    mlmodel = (
        b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: my_loader\n"
        b"    code: code\n    env: conda.yaml\n    python_version: 3.11.7\n"
        b"mlflow_version: 2.14.0\n"
    )
    write(tmp_path, {"MLmodel": mlmodel, "code/my_loader.py": b"def _load_pyfunc(path): pass\n"})
    (finding,) = code_findings(scan_path(tmp_path))
    assert "mlflow.pyfunc.load_model" in finding.message and "my_loader" in finding.message


def test_mlflow_builtin_flavour_is_no_finding(tmp_path: Path) -> None:
    mlmodel = b"flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"
    write(tmp_path, {"MLmodel": mlmodel})
    assert code_findings(scan_path(tmp_path)) == []


def test_triton_python_backend(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "config.pbtxt": b'name: "m"\nbackend: "python"\nmax_batch_size: 8\n',
            "1/model.py": b"class TritonPythonModel: pass\n",
        },
    )
    (finding,) = code_findings(scan_path(tmp_path))
    assert "Triton" in finding.message and "1/model.py" in finding.message
    write(tmp_path / "onnx", {"config.pbtxt": b'name: "m"\nplatform: "onnxruntime_onnx"\n'})
    assert len(code_findings(scan_path(tmp_path / "onnx"))) == 0


# --------------------------------------------------------------------------- archives
def _zip(tree: Tree, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in tree.items():
            zf.writestr(prefix + name, data)
    return buf.getvalue()


def _tar(tree: Tree, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in tree.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "zip-in-tar"])
def test_in_archives_too(tmp_path: Path, kind: str) -> None:
    tree = {f"repo/{k}": v for k, v in hf_folder().items()}
    data = {
        "zip": lambda: _zip(tree),
        "tar": lambda: _tar(tree),
        "tar.gz": lambda: _tar(tree, "w:gz"),
        "zip-in-tar": lambda: _tar({"release/model.zip": _zip(tree)}),
    }[kind]()
    path = tmp_path / f"model.{kind}"
    path.write_bytes(data)
    # (a zip stored last in a tar also opens as a zip: both views are reported)
    found = code_findings(scan_path(path))
    assert found and all(f.severity is Severity.HIGH for f in found)
    finding = found[0]
    assert "modeling_x.py" in finding.message
    expected = {"zip-in-tar": "release/model.zip!", "tar.gz": "<gzip>!"}.get(kind, "")
    assert f"{expected}repo/config.json" in {f.location.member for f in found}
    # the same code has the same digest packed or not
    folder = write(tmp_path / "folder", hf_folder())
    assert digest_of(finding) == digest_of(code_findings(scan_path(folder))[0])
    allowed = code_findings(scan_path(path, allow=[f"sha256:{digest_of(finding)}"]))
    assert allowed and all(f.severity is Severity.INFO for f in allowed)


def test_code_in_a_sibling_folder_of_an_archive_is_not_this_models(tmp_path: Path) -> None:
    tree = {
        "a/config.json": js({"auto_map": {"AutoModel": "modeling_x.M"}}),
        "b/modeling_x.py": MODELING,
    }
    path = tmp_path / "two.zip"
    path.write_bytes(_zip(tree))
    (finding,) = code_findings(scan_path(path))
    assert finding.rule == "model-code-unpinned"


# --------------------------------------------------------------------------- clean
def test_plain_configs_weights_and_tokenizers_stay_clean(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "config.json": js(
                {
                    "architectures": ["BertModel"],
                    "model_type": "bert",
                    "hidden_size": 8,
                    "torch_dtype": "float32",
                }
            ),
            "generation_config.json": js({"do_sample": True, "max_new_tokens": 32}),
            "tokenizer_config.json": js(
                {"tokenizer_class": "BertTokenizer", "model_max_length": 512}
            ),
            "tokenizer.json": js(
                {"version": "1.0", "model": {"type": "WordPiece", "vocab": {"a": 0}}}
            ),
            "special_tokens_map.json": js({"unk_token": "[UNK]"}),
            "modules.json": js(
                [
                    {
                        "idx": 0,
                        "name": "0",
                        "path": "",
                        "type": "sentence_transformers.models.Transformer",
                    }
                ]
            ),
            "model_index.json": js(
                {
                    "_class_name": "StableDiffusionPipeline",
                    "_diffusers_version": "0.30.0",
                    "unet": ["diffusers", "UNet2DConditionModel"],
                }
            ),
            "vocab.txt": b"[PAD]\n[UNK]\na\n",
            "convert_checkpoint.py": b"class Converter: pass\n",  # shipped but named by no loader
            "README.md": b"---\nlicense: mit\n---\n",
        },
    )
    reports = scan_path(tmp_path)
    assert code_findings(reports) == []
    assert not [f for r in reports for f in r.findings if f.severity >= Severity.LOW]


def test_python_source_starting_with_class_is_no_pickle(tmp_path: Path) -> None:
    (tmp_path / "modeling.py").write_bytes(b"class Net(Module):\n    layers = []\n")
    (report,) = scan_path(tmp_path / "modeling.py")
    assert report.findings == ()


# --------------------------------------------------------------------------- misnamed files
@pytest.mark.parametrize(
    ("name", "data", "what"),
    [
        ("model.pt", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "a PNG image"),
        ("weights.safetensors", b"", "empty"),
        (
            "pytorch_model.bin",
            b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
            "Git LFS",
        ),
        ("model.onnx", b"just some text", "no format the scanner reads"),
    ],
)
def test_a_name_that_claims_a_format_the_content_lacks_is_info(
    tmp_path: Path, name: str, data: bytes, what: str
) -> None:
    (tmp_path / name).write_bytes(data)
    (report,) = scan_path(tmp_path / name)
    (finding,) = report.findings
    assert (finding.rule, finding.severity) == ("format-mismatch", Severity.INFO)
    assert what in finding.message


def test_misnamed_member_of_an_archive_is_info(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(_zip({"m/model.pt": b"\xff\xd8\xff\xe0JFIF"}))
    (report,) = scan_path(path)
    assert [(f.rule, f.location.member) for f in report.findings] == [
        ("format-mismatch", "m/model.pt")
    ]


# --------------------------------------------------------------------------- the CLI, the policy
def test_cli_allows_code_by_digest(tmp_path: Path, cli: Any) -> None:
    write(tmp_path, hf_folder())
    first = cli("scan", str(tmp_path), "--format", "json")
    assert first.exit_code == 1, first.stdout
    digest = re.search(r"sha256:([0-9a-f]{64})", first.stdout)
    assert digest
    second = cli("scan", str(tmp_path), "--allow", f"sha256:{digest.group(1)}")
    assert second.exit_code == 0, second.stdout
    bad = cli("scan", str(tmp_path), "--allow", "sha256:123")
    assert bad.exit_code == 2 and "sha256:<64 hexadecimal digits>" in bad.stderr


# --------------------------------------------------------------------------- hostile configs
@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=600),
    st.sampled_from(
        ["config.json", "MLmodel", "config.pbtxt", "MAR-INF/MANIFEST.json", "modules.json"]
    ),
)
def test_references_never_raise_on_bytes(data: bytes, name: str) -> None:
    references(name, data)
    references(name, b'{"auto_map": ' + data + b"}")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=40,
)
_KEYS = st.sampled_from(
    [
        "auto_map",
        "custom_pipelines",
        "_class_name",
        "_diffusers_version",
        "model",
        "handler",
        "type",
        "path",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_KEYS, _JSON, max_size=4)
    | st.lists(st.dictionaries(_KEYS, _JSON, max_size=3), max_size=3)
)
def test_references_never_raise_on_structured_configs(doc: object) -> None:
    for name in ("config.json", "MAR-INF/MANIFEST.json", "modules.json", "model_index.json"):
        for ref in references(name, json.dumps(doc).encode()):
            index = CodeIndex()
            index.observe_member(None, name, io.BytesIO(json.dumps(doc).encode()))
            for finding in index.resolve(frozenset()):
                assert finding.severity is Severity.HIGH
            assert ref.loader and ref.flag


def test_deep_json_and_yaml_aliases_are_bounded() -> None:
    assert references("config.json", b'{"auto_map":' + b"[" * 100_000 + b"]" * 100_000 + b"}") == []
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines += [
        "flavors:",
        "  python_function:",
        "    loader_module: mlflow.sklearn",
        "    extra: *l8",
    ]
    assert references("MLmodel", "\n".join(lines).encode()) == []


def test_every_code_folder_sample_is_flagged(tmp_path: Path) -> None:
    samples = build_code_folders(tmp_path)
    assert len(samples) >= 8
    for sample in samples:
        found = code_findings(scan_path(sample.path))
        assert found and max(f.severity for f in found) >= Severity.HIGH, sample.trick


def test_code_past_the_file_limit_cannot_be_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import atlasguard.artifacts.formats.codefolders as cf

    monkeypatch.setattr(cf, "_MAX_FILES", 8)
    tree = {**hf_folder(), **{f"pad/{i}.txt": b"" for i in range(10)}, "zz_evil.py": b"x = 1\n"}
    path = tmp_path / "m.zip"
    path.write_bytes(_zip(tree))
    (finding,) = code_findings(scan_path(path))
    assert finding.rule == "model-code-unpinned" and "more than 8 files" in finding.message
    (disk,) = code_findings(scan_path(write(tmp_path / "d", tree) / "config.json"))
    assert disk.rule == "model-code-unpinned"


def test_a_code_file_twice_in_an_archive_cannot_be_allowed(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in hf_folder().items():
            zf.writestr(name, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("modeling_x.py", b"import os\n")  # a second copy
    path = tmp_path / "twice.zip"
    path.write_bytes(buf.getvalue())
    (finding,) = code_findings(scan_path(path))
    assert finding.rule == "model-code-unpinned" and "twice" in finding.message
