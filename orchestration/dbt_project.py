"""The dbt project as Dagster sees it, with its artefacts kept under `CRM_HOME`."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from functools import cached_property
from importlib import metadata
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

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


class InstalledDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt CLI resource without two start-up costs it pays for nothing here.

    - It learns the executable's version from `dbt --version` before a run's first dbt step:
      a whole dbt start-up, about 2 s on this machine. When the executable is the one
      installed beside this Python, that version is the installed dbt-core's.
    - Before every dbt step it builds a dbt adapter inside the Dagster process (profile,
      project and the adapter's macros), used only by `fetch_row_counts` and
      `fetch_column_metadata`, which these assets do not call: 2.7 s before the first step
      of a run, 0.9 s before each later one. Without it dbt runs exactly as before, in its
      own process; dagster-dbt has the same no-adapter path for dbt Fusion.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        executable = Path(self.dbt_executable)
        if executable.parent.resolve() == Path(sys.executable).parent.resolve():
            return version.parse(metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def dbt_project(settings: Settings) -> DbtProject:
    return DbtProject(
        project_dir=DBT_PROJECT_DIR,
        profiles_dir=DBT_PROJECT_DIR,
        target=settings.target,
        # Per CRM_HOME, so two homes (or two test runs) never share a target folder.
        target_path=settings.crm_home / "dbt" / "target",
    )


def share_home_with_dbt(settings: Settings) -> None:
    """Give the dbt processes this one starts the same home, as an absolute path.

    dbt's profile reads the warehouse path from `CRM_HOME`, and dbt runs in the project's
    folder. Unset, dbt stopped on a missing variable although `Settings` defaults it to
    `./.crm`; relative, dbt would have built a second warehouse inside the project folder.
    """
    os.environ["CRM_HOME"] = str(settings.crm_home)


def prepared_dbt_project(settings: Settings, *, reparse: bool = False) -> DbtProject:
    """The project with a manifest to load: parsed now if missing, stale-able in dev.

    `reparse`: parse again unless the manifest is current (`manifest_is_current`), so a run
    never builds from a stale manifest and never pays for a parse it does not need.
    """
    project = dbt_project(settings)
    dbt_executable()
    share_home_with_dbt(settings)
    stale = (
        not manifest_is_current(project.manifest_path, settings.target)
        if reparse
        else not project.manifest_path.exists()
    )
    if stale:
        settings.crm_home.mkdir(parents=True, exist_ok=True)
        project.preparer.prepare(project)
        record_parsed_project(project.manifest_path)
    else:
        project.prepare_if_dev()
    return project


# What a parse reads: the project's SQL, YAML, seeds and macros (not its run artefacts).
_PARSED_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".md", ".py"}
_ARTEFACT_FOLDERS = {"target", "logs", "dbt_packages"}


def _parsed_project_stamp(manifest_path: Path) -> Path:
    return manifest_path.with_name("manifest.parsed_from")


def _manifest_metadata(manifest_path: Path) -> dict[str, object] | None:
    try:
        metadata: dict[str, object] = json.loads(manifest_path.read_text(encoding="utf-8"))[
            "metadata"
        ]
    except (OSError, ValueError, KeyError):
        return None
    return metadata


def _parse_origin(metadata: dict[str, object], project_dir: Path) -> str:
    """The project directory a manifest was parsed from, and the parse's invocation: a
    manifest written over later by anything else (an older release) no longer matches."""
    return f"{project_dir.resolve()}\n{metadata.get('invocation_id')}"


def record_parsed_project(manifest_path: Path, project_dir: Path = DBT_PROJECT_DIR) -> None:
    """Note which project directory `manifest_path` was just parsed from: the manifest
    itself holds only relative paths."""
    _parsed_project_stamp(manifest_path).write_text(
        _parse_origin(_manifest_metadata(manifest_path) or {}, project_dir), encoding="utf-8"
    )


def manifest_is_current(
    manifest_path: Path, target: str, project_dir: Path = DBT_PROJECT_DIR
) -> bool:
    """Whether `manifest_path` was parsed from `project_dir` for `target` after the last
    change to any file of that dbt project (and to the `DBT_ENV_CUSTOM_ENV_*` variables).

    The directory counts because file times only order changes within one checkout: a home
    run from another checkout (an older release, a second deployment) has files older than
    a manifest parsed from this one, and would load nodes dbt no longer builds, or miss new
    ones."""
    metadata = _manifest_metadata(manifest_path)
    if metadata is None:
        return False
    stamp = _parsed_project_stamp(manifest_path)
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != _parse_origin(
        metadata, project_dir
    ):
        return False
    if metadata.get("adapter_type") != target or metadata.get("env") != _parse_environment():
        return False
    parsed_at = manifest_path.stat().st_mtime
    return all(
        path.stat().st_mtime < parsed_at
        for path in project_dir.rglob("*")
        if path.suffix in _PARSED_SUFFIXES
        and not _ARTEFACT_FOLDERS.intersection(path.relative_to(project_dir).parts)
    )


def _parse_environment() -> dict[str, str]:
    """The `DBT_ENV_CUSTOM_ENV_*` variables dbt records in the manifest's metadata."""
    prefix = "DBT_ENV_CUSTOM_ENV_"
    return {
        name.removeprefix(prefix): value
        for name, value in os.environ.items()
        if name.startswith(prefix)
    }
