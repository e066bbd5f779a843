"""Screenshots of the deployed dashboards in headless Chromium (playwright-core), each
checked to render: charts drawn, no error panel, Chinese glyphs drawn (a CJK font is
installed). Saved under `CRM_HOME/reports/dashboards/`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dashboards.server import SupersetSettings
from dashboards.spec import DASHBOARDS

SCRIPT_DIR = Path(__file__).with_name("screenshot")
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shot:
    slug: str
    path: Path
    title: str
    charts: int
    still_loading: int
    errors: list[str]
    cjk_glyphs: bool

    @property
    def rendered(self) -> bool:
        return self.charts > 0 and self.still_loading == 0 and not self.errors and self.cjk_glyphs


def _node_modules() -> None:
    if not (SCRIPT_DIR / "node_modules" / "playwright-core").exists():
        subprocess.run(["npm", "ci", "--silent"], cwd=SCRIPT_DIR, check=True)


def take_screenshots(superset: SupersetSettings, out_dir: Path) -> list[Shot]:
    """One full-page PNG per dashboard, with what the page showed."""
    _node_modules()
    out_dir.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [
            "node",
            str(SCRIPT_DIR / "shot.mjs"),
            superset.url,
            superset.admin_user,
            str(out_dir),
            *(dashboard.slug for dashboard in DASHBOARDS),
        ],
        env={**os.environ, "SUPERSET_PASSWORD": superset.password()},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"screenshots failed: {completed.stderr[-2000:]}\n"
            f"Superset's log ({superset.log_path}) ends:\n{_tail(superset.log_path)}"
        )
    for line in completed.stderr.splitlines():
        if line.startswith("login "):
            LOG.warning("Superset %s", line)
    shots = []
    for line in completed.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            shots.append(Shot(**{**record, "path": Path(record["path"])}))
    return shots


def _tail(path: Path, lines: int = 30, window: int = 64 * 1024) -> str:
    """The log's last `lines`, read from its last `window` bytes: the server appends to it
    for as long as it runs, one line per request."""
    if not path.exists():
        return "(no log)"
    with path.open("rb") as log:
        log.seek(max(log.seek(0, os.SEEK_END) - window, 0))
        end = log.read()
    return "\n".join(end.decode("utf-8", errors="replace").splitlines()[-lines:])
