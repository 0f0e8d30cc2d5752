"""Benchmark of artifact integrity: manifests, signatures, encryption (issue 4).

Generates, in a temporary directory, a model of ten 200 MB files and one of a
single 2 GB file (pseudo-random bytes, written fast; deleted afterwards) and
times, on the same files, one after the other:

* manifests: atlasguard SHA-256 (``files`` and ``shards``) and BLAKE3 against
  ``model_signing`` (its Python API in the anchors venv, ``files`` and
  ``shards``, SHA-256 and BLAKE3; timed inside its process) and ``sha256sum``;
* sign and verify (P-256) against hashing alone;
* encryption and decryption throughput against the raw AES-256-GCM speed of
  ``cryptography`` on this machine (in memory, same chunk size).

Files are read from the page cache (they were just written): the figures are
CPU-bound hashing and encryption speed, not disk speed. Each figure is the best
of ``--repeat`` runs. Prints a table, the ratios against the issue's targets and
the exact command; writes ``bench/results/integrity.json``.

    python bench/integrity/run.py --size-scale 0.05   # quick check (~100 MB)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "src"))

from atlasguard.artifacts.encryption import decrypt_path, encrypt_path, encrypt_stream  # noqa: E402
from atlasguard.artifacts.keys import generate_signing_key, kek_from_bytes  # noqa: E402
from atlasguard.artifacts.manifest import hash_model  # noqa: E402
from atlasguard.artifacts.signing import sign_model, verify_model  # noqa: E402

SHARD = 1_000_000_000  # model_signing's default shard size, used by both tools
MB = 1_000_000
_BLOCK = 16 * 1024 * 1024

MS_SCRIPT = r"""
import json, sys, time, hashlib
from model_signing import hashing
path, method, alg, shard = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = hashing.Config()
if method == "shards":
    cfg.use_shard_serialization(hashing_algorithm=alg, shard_size=shard)
else:
    cfg.use_file_serialization(hashing_algorithm=alg)
t = time.perf_counter()
m = cfg.hash(path)
dt = time.perf_counter() - t
h = hashlib.sha256()
for rd in m.resource_descriptors():
    h.update(rd.digest.digest_value)
print(json.dumps({"seconds": dt, "root": h.hexdigest()}))
"""


def anchors_python() -> Path | None:
    venv = Path(os.environ.get("ATLASGUARD_ANCHORS_VENV", REPO / ".anchors-venv"))
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    ok = subprocess.run([str(py), "-c", "import model_signing"], capture_output=True)
    return py if ok.returncode == 0 else None


def write_random(path: Path, size: int, seed: int) -> None:
    """Fill ``path`` with ``size`` pseudo-random bytes, fast (one random block, varied)."""
    block = bytearray(os.urandom(_BLOCK))
    with open(path, "wb") as f:
        written, i = 0, 0
        while written < size:
            block[:16] = (seed * 1_000_003 + i).to_bytes(16, "little")
            n = min(_BLOCK, size - written)
            f.write(memoryview(block)[:n])
            written += n
            i += 1


class _Source(io.RawIOBase):
    """``size`` bytes of one repeated random block, without touching a disk."""

    def __init__(self, size: int, block: memoryview) -> None:
        self.left, self.block = size, block

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.left, _BLOCK)
        buf[:n] = self.block[:n]
        self.left -= n
        return n


class _Null(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(b)


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def raw_aesgcm(total: int, chunk: int, decrypt: bool) -> float:
    """Seconds for cryptography's AES-256-GCM over ``total`` bytes in memory, reused buffers."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(AESGCM.generate_key(256))
    data = os.urandom(chunk)
    ct = aead.encrypt(bytes(12), data, b"aad")
    out = bytearray(chunk + 16)
    pt = bytearray(chunk)
    n = max(1, total // chunk)
    t = time.perf_counter()
    for i in range(n):
        if decrypt:
            aead.decrypt_into(bytes(12), ct, b"aad", pt)
        else:
            aead.encrypt_into(i.to_bytes(12, "big"), data, b"aad", out)
    return (time.perf_counter() - t) * total / (n * chunk)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-scale", type=float, default=1.0, help="1.0 = 10x200 MB + 2 GB")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="Parent of the temp dir.")
    parser.add_argument("--out", type=Path, default=RESULTS / "integrity.json")
    args = parser.parse_args(argv)
    command = "python bench/integrity/run.py " + shlex.join(list(argv or sys.argv[1:]))

    scale = args.size_scale
    small, large = int(200 * MB * scale), int(2000 * MB * scale)
    shard = max(1 << 20, int(SHARD * scale))
    total = 10 * small
    rows: list[dict[str, Any]] = []
    roots: dict[str, dict[str, str]] = {}
    ms_py = anchors_python()

    def row(layout: str, tool: str, what: str, seconds: float, nbytes: int) -> None:
        rows.append(
            {
                "layout": layout,
                "tool": tool,
                "what": what,
                "seconds": seconds,
                "gb_per_s": nbytes / seconds / 1e9,
            }
        )
        print(
            f"  {layout:<9} {tool:<15} {what:<28} {seconds:8.3f} s"
            f" {nbytes / seconds / 1e9:7.2f} GB/s",
            flush=True,
        )

    base = Path(tempfile.mkdtemp(prefix="agbench-", dir=args.workdir))
    try:
        many, one = base / "ten_files", base / "one_file"
        many.mkdir()
        one.mkdir()
        t = time.perf_counter()
        for i in range(10):
            write_random(many / f"shard-{i:02d}.bin", small, i)
        write_random(one / "model.bin", large, 99)
        print(
            f"generated {10 * small + large:,} bytes in {time.perf_counter() - t:.1f} s"
            f" under {base}"
        )
        layouts = {"10x200MB": (many, total), "1x2GB": (one, large)}

        for layout, (path, nbytes) in layouts.items():
            roots[layout] = {}
            files = sorted(str(p) for p in path.iterdir())
            sec, _ = best(
                partial(subprocess.run, ["sha256sum", *files], check=True, capture_output=True),
                args.repeat,
            )
            row(layout, "sha256sum", "sha256 (serial)", sec, nbytes)
            for method, alg in (("files", "sha256"), ("shards", "sha256"), ("files", "blake3")):
                sz = shard if method == "shards" else None
                sec, m = best(partial(hash_model, path, algorithm=alg, shard_size=sz), args.repeat)
                row(layout, "atlasguard", f"{alg} {method}", sec, nbytes)
                roots[layout][f"atlasguard {alg} {method}"] = m.root_digest()
                if ms_py is None:
                    continue
                runs = []
                for _ in range(args.repeat):
                    out = subprocess.run(
                        [str(ms_py), "-c", MS_SCRIPT, str(path), method, alg, str(shard)],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    runs.append(json.loads(out.stdout))
                fastest = min(runs, key=lambda r: r["seconds"])
                row(layout, "model_signing", f"{alg} {method}", fastest["seconds"], nbytes)
                roots[layout][f"model_signing {alg} {method}"] = fastest["root"]

            key = generate_signing_key()
            sig = base / f"{layout}.sig"
            for method in ("files", "shards"):
                sz = shard if method == "shards" else None
                sec, _ = best(
                    partial(sign_model, path, key, signature=sig, shard_size=sz), args.repeat
                )
                row(layout, "atlasguard", f"sign sha256 {method}", sec, nbytes)
                sec, _ = best(
                    partial(verify_model, path, key.public_key(), signature=sig),
                    args.repeat,
                )
                row(layout, "atlasguard", f"verify sha256 {method}", sec, nbytes)

        # Encryption of the 2 GB file, file to file in the same directory.
        kek = kek_from_bytes(os.urandom(32))
        src, enc, dec = one / "model.bin", base / "model.enc", base / "model.dec"
        for chunk in (1 << 20, 4 << 20):
            label = f"{chunk >> 20} MiB chunks"

            def do_enc() -> None:
                enc.unlink(missing_ok=True)
                encrypt_path(src, enc, kek, chunk_size=chunk)  # noqa: B023 - called at once

            def do_dec() -> None:
                dec.unlink(missing_ok=True)
                decrypt_path(enc, dec, kek)

            sec, _ = best(do_enc, args.repeat)
            row("1x2GB", "atlasguard", f"encrypt {label}", sec, large)
            sec, _ = best(do_dec, args.repeat)
            row("1x2GB", "atlasguard", f"decrypt {label}", sec, large)
            row(
                "1x2GB",
                "cryptography",
                f"raw AES-GCM enc {label}",
                min(raw_aesgcm(large, chunk, False) for _ in range(args.repeat)),
                large,
            )
            row(
                "1x2GB",
                "cryptography",
                f"raw AES-GCM dec {label}",
                min(raw_aesgcm(large, chunk, True) for _ in range(args.repeat)),
                large,
            )
            if dec.read_bytes()[: 1 << 20] != src.read_bytes()[: 1 << 20]:
                raise SystemExit("decryption round trip failed")
        # Our streaming code with no file I/O: a source that hands out one block, a null sink.
        block = memoryview(os.urandom(_BLOCK))
        sec, _ = best(lambda: encrypt_stream(_Source(large, block), _Null(), kek), args.repeat)
        row("1x2GB", "atlasguard", "encrypt 1 MiB, memory->null", sec, large)
        sec, _ = best(lambda: shutil.copyfile(src, base / "copy.bin"), args.repeat)
        row("1x2GB", "shutil", "copyfile (I/O floor)", sec, large)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    ratios = summarize(rows)
    result = {
        "command": command,
        "size_scale": scale,
        "shard_size": shard,
        "rows": rows,
        "roots": roots,
        "ratios": ratios,
        "model_signing": ms_py is not None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ncommand: {command}\nraw results: {args.out}")
    return 0


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def gbs(layout: str, tool: str, what: str) -> float | None:
        for r in rows:
            if (r["layout"], r["tool"], r["what"]) == (layout, tool, what):
                return float(r["gb_per_s"])
        return None

    out: dict[str, Any] = {}
    print("\nratios (targets from issue 4)")
    for layout in ("10x200MB", "1x2GB"):
        ours_best = max(
            filter(
                None,
                [
                    gbs(layout, "atlasguard", "sha256 files"),
                    gbs(layout, "atlasguard", "sha256 shards"),
                ],
            ),
            default=None,
        )
        for method in ("files", "shards"):
            ours, theirs = (
                gbs(layout, "atlasguard", f"sha256 {method}"),
                gbs(layout, "model_signing", f"sha256 {method}"),
            )
            if ours and theirs:
                r = ours / theirs
                out[f"{layout} sha256 {method} vs model_signing"] = r
                print(
                    f"  {layout} sha256 {method}: atlasguard/model_signing = {r:.2f}x "
                    f"(target >= 1.6x: {'met' if r >= 1.6 else 'MISSED'})"
                )
        b3 = gbs(layout, "atlasguard", "blake3 files")
        if b3:
            out[f"{layout} blake3 GB/s"] = b3
            print(
                f"  {layout} blake3: {b3:.2f} GB/s (target >= 5: {'met' if b3 >= 5 else 'MISSED'})"
            )
        for op in ("sign", "verify"):
            for method in ("files", "shards"):
                h, s = (
                    gbs(layout, "atlasguard", f"sha256 {method}"),
                    gbs(layout, "atlasguard", f"{op} sha256 {method}"),
                )
                if h and s:
                    overhead = h / s - 1
                    out[f"{layout} {op} {method} overhead"] = overhead
                    print(
                        f"  {layout} {op} {method}: {overhead * 100:+.1f}% time vs hashing "
                        f"(target <= 10%: {'met' if overhead <= 0.10 else 'MISSED'})"
                    )
        _ = ours_best
    mem = gbs("1x2GB", "atlasguard", "encrypt 1 MiB, memory->null")
    limit = gbs("1x2GB", "cryptography", "raw AES-GCM enc 1 MiB chunks")
    if mem and limit:
        out["encrypt memory->null vs raw AES-GCM"] = mem / limit
        print(f"  encrypt without file I/O: {mem / limit * 100:.0f}% of raw AES-GCM")
    floor = gbs("1x2GB", "shutil", "copyfile (I/O floor)")
    enc = gbs("1x2GB", "atlasguard", "encrypt 1 MiB chunks")
    if floor and enc:
        out["encrypt vs copyfile"] = enc / floor
        print(f"  encrypt file->file: {enc / floor * 100:.0f}% of a plain file copy")
    for chunk in ("1 MiB", "4 MiB"):
        for op, raw in (("encrypt", "enc"), ("decrypt", "dec")):
            ours = gbs("1x2GB", "atlasguard", f"{op} {chunk} chunks")
            limit = gbs("1x2GB", "cryptography", f"raw AES-GCM {raw} {chunk} chunks")
            if ours and limit:
                r = ours / limit
                out[f"{op} {chunk} vs raw AES-GCM"] = r
                print(
                    f"  {op} ({chunk}): {r * 100:.0f}% of raw AES-GCM "
                    f"(target >= 80%: {'met' if r >= 0.8 else 'MISSED'})"
                )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
