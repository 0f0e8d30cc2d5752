"""Check an existing MLflow tracking server's access control (what M0005 asks of it).

Two ways in: the server's basic-auth configuration file (``basic_auth.ini``, and
the SQLite user database it names, when readable), or the server's URL (probed
with two read-only requests: one without credentials, one with MLflow's
well-known default admin password). Findings use the scanner's
:class:`~atlasguard.artifacts.findings.Finding`, so they render the same way.

>>> import tempfile, pathlib
>>> ini = pathlib.Path(tempfile.mkdtemp()) / "basic_auth.ini"
>>> _ = ini.write_text("[mlflow]\\ndefault_permission = READ\\nadmin_password = password1234\\n")
>>> sorted(f.rule for f in audit_mlflow_config(ini))
['mlflow-default-admin-password', 'mlflow-default-permission']
"""

from __future__ import annotations

import configparser
import sqlite3
from pathlib import Path

import httpx

from atlasguard.artifacts.findings import Finding, Location, Severity
from atlasguard.errors import UsageError

__all__ = ["DEFAULT_ADMIN", "audit_mlflow", "audit_mlflow_config", "audit_mlflow_url"]

DEFAULT_ADMIN = ("admin", "password1234")
_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
_TECHNIQUES = ("AML.T0035", "AML.T0025")  # AI artifact collection, exfiltration via cyber means
_MITIGATIONS = ("AML.M0005",)
_RANK = {"NO_PERMISSIONS": 0, "READ": 1, "USE": 1, "EDIT": 2, "MANAGE": 3}


def _finding(rule: str, severity: Severity, message: str, where: str) -> Finding:
    return Finding(
        rule=rule,
        severity=severity,
        message=message,
        location=Location(member=where),
        techniques=_TECHNIQUES,
        mitigations=_MITIGATIONS,
    )


def audit_mlflow_config(path: Path, *, max_admins: int = 2) -> list[Finding]:
    """Weaknesses in a ``basic_auth.ini`` (and the SQLite user database it names)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        read = parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not an MLflow auth configuration: {exc}") from None
    if not read:
        raise UsageError(f"{path}: cannot read the file")
    if not parser.has_section("mlflow"):
        raise UsageError(f"{path}: no [mlflow] section (is this basic_auth.ini?)")
    cfg = parser["mlflow"]
    where = str(path)
    out: list[Finding] = []
    default = cfg.get("default_permission", "READ").strip().upper()
    if _RANK.get(default, 1) > 0:
        severity = Severity.CRITICAL if _RANK.get(default, 1) >= 2 else Severity.HIGH
        out.append(
            _finding(
                "mlflow-default-permission",
                severity,
                f"default_permission = {default}: every logged-in user may "
                f"{'change' if severity is Severity.CRITICAL else 'read'} every experiment and "
                "registered model without a grant; set it to NO_PERMISSIONS",
                where,
            )
        )
    password = cfg.get("admin_password", DEFAULT_ADMIN[1])
    if password == DEFAULT_ADMIN[1]:
        out.append(
            _finding(
                "mlflow-default-admin-password",
                Severity.CRITICAL,
                "admin_password is MLflow's published default (password1234): anyone can log in "
                "as the admin",
                where,
            )
        )
    elif password:
        out.append(
            _finding(
                "mlflow-admin-password-in-config",
                Severity.MEDIUM,
                "the admin password is stored in the clear in the configuration file",
                where,
            )
        )
    function = cfg.get("authorization_function", "")
    if function and "authenticate_request_basic_auth" not in function:
        out.append(
            _finding(
                "mlflow-custom-authorization",
                Severity.INFO,
                f"custom authorization_function {function}: review it by hand",
                where,
            )
        )
    database = cfg.get("database_uri", "")
    if database.startswith("sqlite:///"):
        db_path = Path(database.removeprefix("sqlite:///"))
        if not db_path.is_absolute():
            db_path = path.parent / db_path
        if db_path.is_file():
            out.extend(_audit_database(db_path, max_admins=max_admins))
    return out


def _audit_database(db_path: Path, *, max_admins: int) -> list[Finding]:
    where = str(db_path)
    out: list[Finding] = []
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [
            _finding(
                "mlflow-auth-db-unreadable",
                Severity.LOW,
                f"cannot open the auth database: {exc}",
                where,
            )
        ]
    try:
        admins = [r[0] for r in conn.execute("SELECT username FROM users WHERE is_admin")]
        total = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        if len(admins) > max_admins:
            out.append(
                _finding(
                    "mlflow-too-many-admins",
                    Severity.MEDIUM,
                    f"{len(admins)} of {total} users are admins ({', '.join(sorted(admins))}); "
                    f"keep at most {max_admins}",
                    where,
                )
            )
        for table, column in (
            ("experiment_permissions", "experiment_id"),
            ("registered_model_permissions", "name"),
        ):
            rows = conn.execute(
                f"SELECT u.username, p.{column}, p.permission FROM {table} p "  # noqa: S608
                "JOIN users u ON u.id = p.user_id "
                f"WHERE p.{column} IN ('*', '%') OR p.{column} LIKE '%*%'"
            ).fetchall()
            for user, target, permission in rows:
                out.append(
                    _finding(
                        "mlflow-wildcard-grant",
                        Severity.HIGH,
                        f"{user} holds {permission} on {table.split('_')[0]} {target!r}: "
                        "a wildcard grant reaches every object, present and future",
                        where,
                    )
                )
    except sqlite3.Error as exc:
        out.append(
            _finding(
                "mlflow-auth-db-unreadable",
                Severity.LOW,
                f"the auth database does not look like MLflow's: {exc}",
                where,
            )
        )
    finally:
        conn.close()
    return out


def audit_mlflow_url(url: str, *, timeout: float = 10.0) -> list[Finding]:
    """Probe a tracking server: open without credentials? default admin password?"""
    base = url.rstrip("/")
    where = base
    try:
        with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as http:
            anonymous = http.get(base + _PROBE)
            if anonymous.status_code == 200:
                return [
                    _finding(
                        "mlflow-no-auth",
                        Severity.CRITICAL,
                        "the server answers API requests without credentials: the basic-auth app "
                        "is not enabled (mlflow server --app-name basic-auth)",
                        where,
                    )
                ]
            default = http.get(base + _PROBE, auth=DEFAULT_ADMIN)
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach {base}: {exc.__class__.__name__}") from None
    if default.status_code == 200:
        return [
            _finding(
                "mlflow-default-admin-password",
                Severity.CRITICAL,
                "the admin account still has MLflow's published default password (password1234)",
                where,
            )
        ]
    if anonymous.status_code not in (401, 403):
        return [
            _finding(
                "mlflow-unexpected-answer",
                Severity.LOW,
                f"unexpected HTTP {anonymous.status_code} to an anonymous request: check by hand",
                where,
            )
        ]
    return []


def audit_mlflow(target: str) -> list[Finding]:
    """``target`` is a tracking-server URL or the path of its ``basic_auth.ini``."""
    if target.startswith(("http://", "https://")):
        return audit_mlflow_url(target)
    return audit_mlflow_config(Path(target))
