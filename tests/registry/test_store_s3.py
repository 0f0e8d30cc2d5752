"""The S3 store against a real S3-compatible HTTP server (moto's, started here).

Everything LocalStore promises, then the registry end to end with
``store = "s3://bucket/reg"``: push, pull, and a pull refused after the stored
object was altered in the bucket.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("moto", reason="moto is not installed: pip install -e '.[dev]'")
boto3 = pytest.importorskip("boto3", reason="boto3 is not installed: pip install -e '.[s3]'")

from atlasguard.artifacts.keys import create_keyring  # noqa: E402
from atlasguard.errors import ConfigurationError, IntegrityError, UsageError  # noqa: E402
from atlasguard.policy import load_policy_text  # noqa: E402
from atlasguard.registry.service import Registry  # noqa: E402
from atlasguard.registry.stores.s3 import S3Store, parse_s3_url  # noqa: E402
from atlasguard.runtime.deployment import Deployment  # noqa: E402

MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free local port, and dummy credentials in the environment."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start: {log.read_text()}")
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
            for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
                mp.delenv(var, raising=False)
            # Never the machine's own AWS configuration.
            mp.setenv("AWS_CONFIG_FILE", str(log.parent / "none"))
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(log.parent / "none"))
            yield url
    finally:
        server.kill()
        server.wait(timeout=10)


def _client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"ag-{uuid.uuid4().hex[:16]}"
    _client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(endpoint: str, bucket: str) -> S3Store:
    return S3Store(bucket, "blobs", endpoint_url=endpoint, region="us-east-1")


def _names(endpoint: str, bucket: str) -> list[str]:
    listing = _client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def _api_calls(store: S3Store) -> list[str]:
    calls: list[str] = []

    def seen(model: Any, **_: Any) -> None:
        calls.append(model.name)

    store._client.meta.events.register("before-call.s3.*", seen)
    return calls


# -- the Store contract -----------------------------------------------------------------


def test_content_addressed_and_idempotent(store: S3Store, endpoint: str, bucket: str) -> None:
    data = b"x" * 3_000_000
    key = store.put(io.BytesIO(data))
    assert key == hashlib.sha256(data).hexdigest()
    assert _names(endpoint, bucket) == [f"blobs/{key[:2]}/{key}"]
    calls = _api_calls(store)
    assert store.put_bytes(data) == key
    assert calls == ["HeadObject"]  # already there: nothing uploaded again
    assert store.get(key) == data
    with store.open(key) as f:
        assert f.read(3) == b"xxx"
    assert store.exists(key)
    store.delete(key)
    assert not store.exists(key)
    assert _names(endpoint, bucket) == []
    with pytest.raises(KeyError):
        store.get(key)
    with pytest.raises(KeyError):
        store.open(key)
    store.delete(key)  # deleting what is gone is not an error


def test_no_prefix_puts_blobs_at_the_bucket_root(endpoint: str, bucket: str) -> None:
    store = S3Store(bucket, endpoint_url=endpoint)
    key = store.put_bytes(b"")
    assert key == hashlib.sha256(b"").hexdigest()
    assert _names(endpoint, bucket) == [f"{key[:2]}/{key}"]
    assert store.get(key) == b""


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "", "ab", "a" * 63 + "/", "a" * 65])
def test_bad_keys_are_refused(store: S3Store, bad: str) -> None:
    for call in (store.get, store.open, store.exists, store.delete):
        with pytest.raises(UsageError, match="invalid blob key"):
            call(bad)


def test_failed_read_uploads_nothing(store: S3Store, endpoint: str, bucket: str) -> None:
    class Boom(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        store.put(Boom())
    assert _names(endpoint, bucket) == []


class _Counting(io.RawIOBase):
    """A stream of ``size`` pseudo-random bytes that records what each read asked for."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.asked: list[int] = []
        self.counter = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.asked.append(n)
        n = self.left if n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        del out[n:]
        self.left -= n
        return bytes(out)


def test_a_large_blob_streams_in_parts(store: S3Store, endpoint: str, bucket: str) -> None:
    size = 20 * MiB + 123
    source = _Counting(size)
    calls = _api_calls(store)
    key = store.put(source)  # type: ignore[arg-type]
    # Read a chunk at a time, never "everything", and sent as a multipart upload.
    assert all(0 < n <= MiB for n in source.asked)
    assert "CreateMultipartUpload" in calls and calls.count("UploadPart") >= 3
    head = _client(endpoint).head_object(Bucket=bucket, Key=f"blobs/{key[:2]}/{key}")
    assert head["ContentLength"] == size
    expected = hashlib.sha256()
    replay = _Counting(size)
    while chunk := replay.read(MiB):
        expected.update(chunk)
    assert key == expected.hexdigest()
    # open() is a real binary stream: buffered reads, readinto, copyfileobj.
    got = hashlib.sha256()
    with store.open(key) as f:
        assert f.readable()
        first = bytearray(1000)
        assert f.readinto(first) == 1000
        got.update(first)
        sink = io.BytesIO()
        shutil.copyfileobj(f, sink, MiB)
        got.update(sink.getvalue())
        assert f.read() == b""
    assert got.hexdigest() == key


# One bucket for every example is fine: the store is content addressed.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=4096))
def test_any_bytes_round_trip(store: S3Store, data: bytes) -> None:
    key = store.put_bytes(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.get(key) == data
    with store.open(key) as f:
        assert f.read() == data


def test_missing_credentials_are_a_configuration_error(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    bare = S3Store(store.bucket, endpoint_url=store.endpoint_url)
    with pytest.raises(ConfigurationError, match="no S3 credentials"):
        bare.put_bytes(b"x")


def test_a_missing_bucket_is_a_configuration_error(endpoint: str) -> None:
    store = S3Store(f"ag-none-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint)
    with pytest.raises(ConfigurationError, match="no bucket named"):
        store.put_bytes(b"x")
    assert not store.exists(hashlib.sha256(b"x").hexdigest())


def test_without_boto3_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail
    with pytest.raises(ConfigurationError, match=r"pip install 'atlasguard\[s3\]'"):
        S3Store("bucket")


@pytest.mark.parametrize(
    ("url", "parsed"),
    [("s3://b", ("b", "")), ("s3://b/", ("b", "")), ("s3://b/x/y/", ("b", "x/y"))],
)
def test_s3_urls(url: str, parsed: tuple[str, str]) -> None:
    assert parse_s3_url(url) == parsed


@pytest.mark.parametrize("url", ["s3:///x", "gs://b/x", "s3://b/x?versionId=1", "s3://b#f"])
def test_malformed_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(UsageError, match="s3://BUCKET"):
        parse_s3_url(url)


# -- the registry on S3 -----------------------------------------------------------------


def open_registry(policy: Any) -> Registry:
    return Deployment.open(policy).registry


def _policy(
    tmp_path: Path, endpoint: str, bucket: str, *, extra: str = "", encrypt: bool = False
) -> Any:
    text = (
        '[deployment]\nstate_dir = "state"\n'
        f"{extra}"
        f"[controls.registry]\nenabled = true\nencrypt = {str(encrypt).lower()}\n"
        f'store = "s3://{bucket}/reg"\ns3_endpoint_url = "{endpoint}"\ns3_region = "us-east-1"\n'
    )
    return load_policy_text(text, path=tmp_path / "atlasguard.toml")


def _model(root: Path) -> Path:
    d = root / "model"
    d.mkdir(parents=True)
    (d / "weights.bin").write_bytes(b"weights" * 100)
    (d / "config.json").write_text('{"layers": 2}')
    return d


def test_registry_on_s3_push_pull_and_tamper(tmp_path: Path, endpoint: str, bucket: str) -> None:
    reg = open_registry(_policy(tmp_path, endpoint, bucket))
    try:
        assert isinstance(reg.store, S3Store) and reg.store.prefix == "reg"
        reg.identity.ensure_principal("ops", admin=True)
        version = reg.push("ops", "digits", _model(tmp_path), "model")
        names = _names(endpoint, bucket)
        assert len(names) == 2 and all(n.startswith("reg/") for n in names)
        assert not (tmp_path / "state" / "registry").exists()  # nothing kept locally
        out = reg.pull("ops", "digits@1", tmp_path / "out")
        assert (out / "weights.bin").read_bytes() == b"weights" * 100
        assert (out / "config.json").read_text() == '{"layers": 2}'

        client = _client(endpoint)
        for name in names:
            body = client.get_object(Bucket=bucket, Key=name)["Body"].read()
            if body.startswith(b"weights"):
                client.put_object(Bucket=bucket, Key=name, Body=b"backdoor" + body[8:])
        with pytest.raises(IntegrityError, match="failed verification"):
            reg.pull("ops", "digits", tmp_path / "out2")
        assert not (tmp_path / "out2").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".atlasguard")] == []
        last = list(reg.audit.records())[-1][1]
        assert (last.action, last.decision, last.reason) == ("registry.pull", "deny", "integrity")

        client.delete_object(Bucket=bucket, Key=names[0])
        with pytest.raises(IntegrityError, match="missing"):
            reg.pull("ops", f"digits@sha256:{version.digest}", tmp_path / "out3")
    finally:
        reg.audit.close()


def test_registry_on_s3_encrypted_keyring_outside_the_bucket(
    tmp_path: Path, endpoint: str, bucket: str
) -> None:
    # The keyring-inside-the-store check is for local stores; here it sits in the state dir.
    create_keyring(tmp_path / "state" / "registry" / "kek.json")
    keys = '[keys]\nkeyring = "state/registry/kek.json"\n'
    reg = open_registry(_policy(tmp_path, endpoint, bucket, extra=keys, encrypt=True))
    try:
        assert reg.keyring is not None
        reg.identity.ensure_principal("ops", admin=True)
        assert reg.push("ops", "digits", _model(tmp_path), "model").encrypted
        client = _client(endpoint)
        stored = [
            client.get_object(Bucket=bucket, Key=n)["Body"].read() for n in _names(endpoint, bucket)
        ]
        assert stored and all(b"weights" not in b for b in stored)
        out = reg.pull("ops", "digits", tmp_path / "out")
        assert (out / "weights.bin").read_bytes() == b"weights" * 100
    finally:
        reg.audit.close()


def test_s3_settings_without_an_s3_store_are_refused(tmp_path: Path) -> None:
    policy = load_policy_text(
        '[deployment]\nstate_dir = "state"\n[controls.registry]\nenabled = true\n'
        's3_endpoint_url = "http://127.0.0.1:9"\n',
        path=tmp_path / "atlasguard.toml",
    )
    with pytest.raises(ConfigurationError, match="s3://BUCKET"):
        open_registry(policy)


def test_a_bad_store_url_names_the_policy_line(tmp_path: Path) -> None:
    policy = load_policy_text(
        '[deployment]\nstate_dir = "state"\n[controls.registry]\nenabled = true\n'
        'store = "gs://bucket/x"\n',
        path=tmp_path / "atlasguard.toml",
    )
    with pytest.raises(ConfigurationError, match=r"atlasguard\.toml:\d+: 'gs://bucket/x'"):
        open_registry(policy)
