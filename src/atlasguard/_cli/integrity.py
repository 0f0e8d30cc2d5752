"""``atlasguard hash|keygen|sign|verify|encrypt|decrypt|rekey``: artifact integrity.

Reads ``ATLASGUARD_*`` environment variables (key material, passphrases) and
nothing else outside its arguments; the library takes keys as arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from atlasguard._cli.console import console, err_console
from atlasguard.errors import UsageError

if TYPE_CHECKING:
    from atlasguard.artifacts.encryption import KeySource

__all__ = ["register"]

KEK_ENV = "ATLASGUARD_KEK"


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


@contextmanager
def _progress(label: str, path: Path) -> Iterator[Callable[[int], None] | None]:
    """A byte progress bar on stderr when it is a terminal, else nothing."""
    if not err_console.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=_tree_size(path))
        yield lambda n: bar.advance(task, n)


def _env(name: str | None) -> bytes | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise UsageError(f"environment variable {name} is not set")
    return value.encode()


def hash_command(
    path: Path = typer.Argument(..., help="Model directory or file."),
    algorithm: str = typer.Option("sha256", "--algorithm", "-a", help="sha256 or blake3."),
    shard_size: int | None = typer.Option(None, "--shard-size", help="Hash in shards of BYTES."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the manifest here."),
    allow_symlinks: bool = typer.Option(False, "--allow-symlinks", help="Hash links (inside)."),
    ignore: list[str] = typer.Option([], "--ignore", help="Relative path to leave out."),
) -> None:
    """Write a manifest: one digest per file (or shard), computed on every core."""
    from atlasguard.artifacts.manifest import hash_model

    if algorithm not in ("sha256", "blake3"):
        raise UsageError(f"unknown algorithm {algorithm!r} (sha256 or blake3)")
    alg: Literal["sha256", "blake3"] = "sha256" if algorithm == "sha256" else "blake3"
    ignores = list(ignore)
    if output is not None and path.is_dir():
        with suppress(ValueError):
            ignores.append(output.resolve().relative_to(path.resolve()).as_posix())
    with _progress("hashing", path) as progress:
        manifest = hash_model(
            path,
            algorithm=alg,
            shard_size=shard_size,
            allow_symlinks=allow_symlinks,
            ignore_paths=ignores,
            progress=progress,
        )
    text = manifest.to_json()
    if output is None:
        console.out(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(
            f"wrote {escape(str(output))}: {len(manifest.resources)} resources, "
            f"root sha256 {manifest.root_digest()}"
        )


def keygen_command(
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the key files."),
    symmetric: bool = typer.Option(False, "--symmetric", help="Write a key-encryption keyring."),
    curve: str = typer.Option("P-256", "--curve", help="P-256 or P-384."),
    passphrase_env: str | None = typer.Option(
        None, "--passphrase-env", help="Encrypt private.pem with the passphrase in this variable."
    ),
) -> None:
    """Write private.pem and public.pem, or (--symmetric) a keyring kek.json (mode 0600)."""
    from atlasguard.artifacts.keys import create_keyring, write_signing_keypair

    if symmetric:
        ring = create_keyring(output / "kek.json")
        console.print(f"wrote {escape(str(output / 'kek.json'))} (key {ring.active_id})")
        return
    if curve not in ("P-256", "P-384"):
        raise UsageError(f"unsupported curve {curve!r} (P-256 or P-384)")
    priv, pub = write_signing_keypair(
        output, curve="P-256" if curve == "P-256" else "P-384", passphrase=_env(passphrase_env)
    )
    console.print(f"wrote {escape(str(priv))} and {escape(str(pub))}")
    if passphrase_env is None:
        err_console.print(
            f"[yellow]warning:[/] {escape(str(priv))} is not encrypted (mode 0600); "
            "pass --passphrase-env VAR to encrypt it with a passphrase"
        )


def sign_command(
    path: Path = typer.Argument(..., help="Model directory or file."),
    key: Path = typer.Option(..., "--key", "-k", help="PEM EC private key."),
    signature: Path | None = typer.Option(None, "--signature", help="Default PATH/model.sig."),
    passphrase_env: str | None = typer.Option(None, "--passphrase-env", help="Key passphrase."),
    algorithm: str = typer.Option("sha256", "--algorithm", "-a", help="sha256 or blake3."),
    shard_size: int | None = typer.Option(None, "--shard-size", help="Hash in shards of BYTES."),
    allow_symlinks: bool = typer.Option(False, "--allow-symlinks", help="Hash links (inside)."),
    ignore: list[str] = typer.Option([], "--ignore", help="Relative path to leave out."),
) -> None:
    """Sign a model in the OpenSSF model-signing format (Sigstore bundle)."""
    from atlasguard.artifacts.keys import load_private_key
    from atlasguard.artifacts.signing import sign_model

    if algorithm not in ("sha256", "blake3"):
        raise UsageError(f"unknown algorithm {algorithm!r} (sha256 or blake3)")
    private = load_private_key(key, _env(passphrase_env))
    with _progress("signing", path) as progress:
        out = sign_model(
            path,
            private,
            signature=signature,
            algorithm="sha256" if algorithm == "sha256" else "blake3",
            shard_size=shard_size,
            allow_symlinks=allow_symlinks,
            ignore_paths=ignore,
            progress=progress,
        )
    console.print(f"signed {escape(str(path))}: {escape(str(out))}")


def verify_command(
    path: Path = typer.Argument(..., help="Model directory or file."),
    public_key: Path | None = typer.Option(None, "--public-key", help="PEM EC public key."),
    signature: Path | None = typer.Option(None, "--signature", help="Default PATH/model.sig."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="Check against an (unsigned) manifest instead."
    ),
) -> None:
    """Exit 0 only when every file matches the signature (or manifest)."""
    from atlasguard.artifacts.manifest import MalformedManifestError, Manifest, verify_manifest
    from atlasguard.artifacts.signing import verify_model

    if (public_key is None) == (manifest is None):
        raise UsageError("give --public-key (signature) or --manifest, not both")
    with _progress("verifying", path) as progress:
        if manifest is not None:
            try:
                expected = Manifest.from_json(manifest.read_bytes())
            except OSError as exc:
                raise MalformedManifestError(f"{manifest}: cannot read: {exc.strerror}") from None
            extra: list[str] = []
            if path.is_dir():
                with suppress(ValueError):
                    extra.append(manifest.resolve().relative_to(path.resolve()).as_posix())
            verify_manifest(path, expected, extra_ignores=extra, progress=progress)
        else:
            from atlasguard.artifacts.keys import load_public_key

            key = load_public_key(public_key) if public_key is not None else None
            if key is None:
                raise UsageError("give --public-key")
            expected = verify_model(path, key, signature=signature, progress=progress)
    console.print(
        f"verified {escape(str(path))}: {len(expected.resources)} resources match "
        f"(root sha256 {expected.root_digest()})"
    )


def _key_source(
    key_file: Path | None, key_env: str | None, passphrase_env: str | None, *, what: str = ""
) -> KeySource:
    """The key named on the command line, or ``ATLASGUARD_KEK`` when none is."""
    import base64
    import binascii

    from atlasguard.artifacts.encryption import Passphrase
    from atlasguard.artifacts.keys import kek_from_bytes, load_keyring

    given = [x for x in (key_file, key_env, passphrase_env) if x is not None]
    if len(given) > 1:
        raise UsageError(f"give one of --{what}key-file, --{what}key-env, --{what}passphrase-env")
    if key_file is not None:
        return load_keyring(key_file)
    if passphrase_env is not None:
        secret = _env(passphrase_env)
        if not secret:
            raise UsageError(f"{passphrase_env} is empty")
        return Passphrase(secret)
    env = key_env or (KEK_ENV if not what and KEK_ENV in os.environ else None)
    if env is None:
        raise UsageError(
            f"no key: give --{what}key-file, --{what}key-env or --{what}passphrase-env"
            + (f" (or set {KEK_ENV})" if not what else "")
        )
    raw = _env(env) or b""
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{env} is not base64") from None
    if len(key) != 32:
        raise UsageError(f"{env} must hold 32 bytes (base64), not {len(key)}")
    return kek_from_bytes(key)


_KEY_FILE = typer.Option(None, "--key-file", help="Keyring file (atlasguard keygen --symmetric).")
_KEY_ENV = typer.Option(
    None, "--key-env", help=f"Variable holding a base64 key (default {KEK_ENV})."
)
_PASS_ENV = typer.Option(None, "--passphrase-env", help="Variable holding a passphrase.")


def encrypt_command(
    src: Path = typer.Argument(..., help="File or model directory."),
    dst: Path = typer.Argument(..., help="Encrypted file or directory to create."),
    key_file: Path | None = _KEY_FILE,
    key_env: str | None = _KEY_ENV,
    passphrase_env: str | None = _PASS_ENV,
    chunk_size: int = typer.Option(1 << 20, "--chunk-size", help="Plaintext bytes per chunk."),
) -> None:
    """Encrypt with AES-256-GCM in authenticated chunks under a fresh data key."""
    from atlasguard.artifacts.encryption import encrypt_path

    key = _key_source(key_file, key_env, passphrase_env)
    with _progress("encrypting", src) as progress:
        encrypt_path(src, dst, key, chunk_size=chunk_size, progress=progress)
    console.print(f"encrypted {escape(str(src))} -> {escape(str(dst))}")


def decrypt_command(
    src: Path = typer.Argument(..., help="Encrypted file or directory."),
    dst: Path = typer.Argument(..., help="Plaintext file or directory to create."),
    key_file: Path | None = _KEY_FILE,
    key_env: str | None = _KEY_ENV,
    passphrase_env: str | None = _PASS_ENV,
) -> None:
    """Decrypt; the destination appears only once every chunk has authenticated."""
    from atlasguard.artifacts.encryption import decrypt_path

    key = _key_source(key_file, key_env, passphrase_env)
    with _progress("decrypting", src) as progress:
        decrypt_path(src, dst, key, progress=progress)
    console.print(f"decrypted {escape(str(src))} -> {escape(str(dst))}")


def rekey_command(
    path: Path = typer.Argument(..., help="Encrypted file or directory."),
    key_file: Path | None = _KEY_FILE,
    key_env: str | None = _KEY_ENV,
    passphrase_env: str | None = _PASS_ENV,
    new_key_file: Path | None = typer.Option(None, "--new-key-file", help="New keyring."),
    new_key_env: str | None = typer.Option(None, "--new-key-env", help="New base64 key variable."),
    new_passphrase_env: str | None = typer.Option(
        None, "--new-passphrase-env", help="New passphrase variable."
    ),
) -> None:
    """Re-wrap the data keys under a new key; the payload is not re-encrypted."""
    from atlasguard.artifacts.encryption import rekey_path

    old = _key_source(key_file, key_env, passphrase_env)
    new = _key_source(new_key_file, new_key_env, new_passphrase_env, what="new-")
    count = rekey_path(path, old, new)
    console.print(f"re-keyed {count} file(s) under {escape(str(path))}")


def register(app: typer.Typer) -> None:
    """Add the integrity commands to ``app``."""
    app.command("hash")(hash_command)
    app.command("keygen")(keygen_command)
    app.command("sign")(sign_command)
    app.command("verify")(verify_command)
    app.command("encrypt")(encrypt_command)
    app.command("decrypt")(decrypt_command)
    app.command("rekey")(rekey_command)
