"""A local Apache Superset for the dashboards: installed into its own virtual environment,
started with a SQLite metadata store under `CRM_HOME/superset`, and stopped again.

`crm superset up` does all of it; `crm superset down` stops the server. The admin comes from
`CRM_SUPERSET_ADMIN_USER` / `CRM_SUPERSET_ADMIN_PASSWORD`: no password is ever defaulted.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from crm_warehouse.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).with_name("superset-requirements.txt")


class SupersetError(RuntimeError):
    """Superset could not be installed, configured or started; the message says which step."""


@dataclass(frozen=True)
class SupersetSettings:
    url: str
    venv: Path
    home: Path  # metadata database, config, logs, pid file
    admin_user: str
    admin_password: str | None = field(default=None, repr=False)
    workers: int = 2

    @classmethod
    def from_env(
        cls, settings: Settings, environ: dict[str, str] | None = None
    ) -> SupersetSettings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            url=env.get("CRM_SUPERSET_URL", "http://127.0.0.1:8088").rstrip("/"),
            venv=Path(env.get("CRM_SUPERSET_VENV") or REPO_ROOT / ".venv-superset"),
            home=settings.crm_home / "superset",
            admin_user=env.get("CRM_SUPERSET_ADMIN_USER", "admin"),
            admin_password=env.get("CRM_SUPERSET_ADMIN_PASSWORD") or None,
        )

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def bind(self) -> str:
        host = self.url.split("://", 1)[1].rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.home / "superset_config.py"

    @property
    def pid_path(self) -> Path:
        return self.home / "gunicorn.pid"

    @property
    def log_path(self) -> Path:
        return self.home / "superset.log"

    def password(self) -> str:
        if not self.admin_password:
            raise SupersetError(
                "set CRM_SUPERSET_ADMIN_PASSWORD (and optionally CRM_SUPERSET_ADMIN_USER, "
                "default admin): the Superset admin has no default password"
            )
        return self.admin_password

    def executable(self, name: str) -> Path:
        return self.venv / "bin" / name


def install(superset: SupersetSettings) -> None:
    """Create the Superset virtual environment with the pinned packages (about 75 s)."""
    if not superset.executable("python").exists():
        _run([sys.executable, "-m", "venv", str(superset.venv)], "create the Superset venv")
    _run(
        [str(superset.executable("pip")), "install", "--quiet", "-r", str(REQUIREMENTS)],
        "install Superset",
    )


def _secret_key(superset: SupersetSettings) -> str:
    configured = os.environ.get("CRM_SUPERSET_SECRET_KEY")
    if configured:
        return configured
    path = superset.home / "secret_key"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(42))
    return path.read_text().strip()


def write_config(superset: SupersetSettings) -> Path:
    superset.home.mkdir(parents=True, exist_ok=True)
    metadata = superset.home / "superset.db"
    superset.config_path.write_text(
        f'''"""Written by `crm superset up`; edit the generator in dashboards/server.py instead."""
SECRET_KEY = {_secret_key(superset)!r}
SQLALCHEMY_DATABASE_URI = {f"sqlite:///{metadata}"!r}
TALISMAN_ENABLED = False
WTF_CSRF_ENABLED = True
CACHE_CONFIG = {{"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}}
DATA_CACHE_CONFIG = CACHE_CONFIG
RATELIMIT_STORAGE_URI = "memory://"
BABEL_DEFAULT_LOCALE = "zh"
LANGUAGES = {{
    "zh": {{"flag": "cn", "name": "简体中文"}},
    "en": {{"flag": "us", "name": "English"}},
}}
FEATURE_FLAGS = {{"DASHBOARD_NATIVE_FILTERS": True}}
''',
        encoding="utf-8",
    )
    superset.config_path.chmod(0o600)
    return superset.config_path


def _environment(superset: SupersetSettings) -> dict[str, str]:
    return {
        **os.environ,
        "SUPERSET_CONFIG_PATH": str(superset.config_path),
        "FLASK_APP": "superset.app:create_app()",
        "PYTHONWARNINGS": "ignore",
    }


def _run(command: list[str], step: str, env: dict[str, str] | None = None) -> None:
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-20:])
        raise SupersetError(f"could not {step} (exit {completed.returncode}):\n{tail}")


def healthy(superset: SupersetSettings) -> bool:
    try:
        with urllib.request.urlopen(f"{superset.url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def up(superset: SupersetSettings, *, timeout: float = 180) -> None:
    """Configure Superset, migrate its metadata, create the admin and start it in the
    background; returns once `/health` answers. Nothing happens if it already answers."""
    if healthy(superset):
        return
    password = superset.password()
    if not superset.executable("superset").exists():
        install(superset)
    write_config(superset)
    env = _environment(superset)
    cli = str(superset.executable("superset"))
    _run([cli, "db", "upgrade"], "migrate the Superset metadata database", env)
    # create-admin fails when the user exists; that is the idempotent case, so check first.
    users = subprocess.run(
        [cli, "fab", "list-users"], env=env, capture_output=True, text=True, check=False
    )
    if f"username:{superset.admin_user} " not in users.stdout.replace(" | ", " "):
        _run(
            [
                cli,
                "fab",
                "create-admin",
                "--username",
                superset.admin_user,
                "--firstname",
                "CRM",
                "--lastname",
                "Admin",
                "--email",
                f"{superset.admin_user}@localhost",
                "--password",
                password,
            ],
            "create the Superset admin",
            env,
        )
    _run([cli, "init"], "initialise Superset roles and permissions", env)
    log = superset.log_path.open("ab")
    process = subprocess.Popen(
        [
            str(superset.executable("gunicorn")),
            "--workers",
            str(superset.workers),
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--timeout",
            "120",
            "--access-logfile",
            "-",  # into the server's log: what was asked and answered is what an operator reads
            "--bind",
            superset.bind,
            "--pid",
            str(superset.pid_path),
            "superset.app:create_app()",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives `crm superset up`
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(superset):
            return
        if process.poll() is not None:
            raise SupersetError(
                f"Superset exited with {process.returncode}: see {superset.log_path}"
            )
        time.sleep(1)
    raise SupersetError(f"Superset did not answer within {timeout:.0f} s: see {superset.log_path}")


def down(superset: SupersetSettings, *, timeout: float = 30) -> bool:
    """Stop the server `up` started; False if none was running."""
    if not superset.pid_path.exists():
        return False
    pid = int(superset.pid_path.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        superset.pid_path.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    return True
