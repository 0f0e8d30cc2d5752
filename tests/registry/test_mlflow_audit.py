"""``registry audit-mlflow``: configuration files, the auth database, and a live server.

The live-server tests run a small HTTP server in a thread that answers like an
MLflow tracking server does (200 to an open server, 401 without or with wrong
basic-auth credentials); MLflow itself is not installed here.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from atlasguard.errors import UsageError
from atlasguard.registry.mlflow_audit import audit_mlflow, audit_mlflow_config


def _ini(tmp_path: Path, **values: str) -> Path:
    lines = ["[mlflow]"] + [f"{k} = {v}" for k, v in values.items()]
    path = tmp_path / "basic_auth.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_shipped_defaults_are_reported(tmp_path: Path) -> None:
    rules = {
        f.rule: f.severity.label
        for f in audit_mlflow_config(
            _ini(
                tmp_path,
                default_permission="READ",
                admin_username="admin",
                admin_password="password1234",
            )
        )
    }
    assert rules == {
        "mlflow-default-permission": "high",
        "mlflow-default-admin-password": "critical",
    }


def test_a_hardened_config_has_only_the_cleartext_password(tmp_path: Path) -> None:
    findings = audit_mlflow_config(
        _ini(tmp_path, default_permission="NO_PERMISSIONS", admin_password="a-long-random-one")
    )
    assert [f.rule for f in findings] == ["mlflow-admin-password-in-config"]


def test_manage_by_default_is_critical(tmp_path: Path) -> None:
    (f,) = [
        x
        for x in audit_mlflow_config(
            _ini(tmp_path, default_permission="MANAGE", admin_password="x")
        )
        if x.rule == "mlflow-default-permission"
    ]
    assert f.severity.label == "critical"


def test_the_auth_database_wildcards_and_admins(tmp_path: Path) -> None:
    db = tmp_path / "basic_auth.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT, password_hash TEXT,
                            is_admin BOOLEAN);
        CREATE TABLE experiment_permissions (id INTEGER PRIMARY KEY, experiment_id TEXT,
                                             user_id INTEGER, permission TEXT);
        CREATE TABLE registered_model_permissions (id INTEGER PRIMARY KEY, name TEXT,
                                                   user_id INTEGER, permission TEXT);
        INSERT INTO users VALUES (1,'admin','h',1),(2,'a','h',1),(3,'b','h',1),(4,'c','h',0);
        INSERT INTO registered_model_permissions VALUES (1,'*',4,'MANAGE'),(2,'fraud',4,'READ');
        INSERT INTO experiment_permissions VALUES (1,'12',4,'EDIT');
    """)
    conn.commit()
    conn.close()
    findings = audit_mlflow_config(
        _ini(
            tmp_path,
            default_permission="NO_PERMISSIONS",
            admin_password="x",
            database_uri="sqlite:///basic_auth.db",
        )
    )
    rules = sorted(f.rule for f in findings)
    assert rules == [
        "mlflow-admin-password-in-config",
        "mlflow-too-many-admins",
        "mlflow-wildcard-grant",
    ]


def test_bad_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        audit_mlflow_config(tmp_path / "missing.ini")
    bad = tmp_path / "x.ini"
    bad.write_text("not ini at all [[[", encoding="utf-8")
    with pytest.raises(UsageError):
        audit_mlflow_config(bad)


class _Fake(BaseHTTPRequestHandler):
    mode = "open"

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        default = "Basic " + base64.b64encode(b"admin:password1234").decode()
        ok = self.mode == "open" or (self.mode == "default" and auth == default)
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"experiments": []}' if ok else b'{"error_code": "UNAUTHENTICATED"}')

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(params=["open", "default", "hardened"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    handler = type("H", (_Fake,), {"mode": request.param})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield request.param, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_live_server_probes(server: tuple[str, str]) -> None:
    mode, url = server
    rules = [f.rule for f in audit_mlflow(url)]
    expected = {
        "open": ["mlflow-no-auth"],
        "default": ["mlflow-default-admin-password"],
        "hardened": [],
    }[mode]
    assert rules == expected


def test_unreachable_server_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot reach"):
        audit_mlflow("http://127.0.0.1:9")


def test_cli_exit_codes(cli: Any, tmp_path: Path) -> None:
    res = cli("registry", "audit-mlflow", str(_ini(tmp_path, default_permission="READ")))
    assert res.exit_code == 1
    assert "mlflow-default-permission" in res.stdout
    safe = _ini(tmp_path, default_permission="NO_PERMISSIONS", admin_password="long-secret")
    assert cli("registry", "audit-mlflow", str(safe)).exit_code == 0
