"""The dbt project as Dagster sees it, with its artefacts kept under `CRM_HOME`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from crm_warehouse.settings import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


def dbt_executable() -> str:
    """dbt from PATH, else the one installed beside this Python (an unactivated venv).

    dagster-dbt's own preparer looks for `dbt` on PATH only, so in the second case the venv's
    bin folder is put on this process's PATH too.
    """
    found = shutil.which("dbt")
    if found:
        return found
    beside = Path(sys.executable).with_name("dbt")
    os.environ["PATH"] = f"{beside.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(beside)


def dbt_project(settings: Settings) -> DbtProject:
    return DbtProject(
        project_dir=DBT_PROJECT_DIR,
        profiles_dir=DBT_PROJECT_DIR,
        target=settings.target,
        # Per CRM_HOME, so two homes (or two test runs) never share a target folder.
        target_path=settings.crm_home / "dbt" / "target",
    )


def prepared_dbt_project(settings: Settings, *, reparse: bool = False) -> DbtProject:
    """The project with a manifest to load: parsed now if missing, stale-able in dev."""
    project = dbt_project(settings)
    dbt_executable()
    if reparse or not project.manifest_path.exists():
        settings.crm_home.mkdir(parents=True, exist_ok=True)
        project.preparer.prepare(project)
    else:
        project.prepare_if_dev()
    return project
