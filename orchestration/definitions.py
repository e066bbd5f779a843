"""The one `Definitions` of crm-warehouse (`dagster dev -m orchestration.definitions`).

Only this module reads the environment: `CRM_HOME` and the other `CRM_*` variables.
"""

from crm_warehouse.settings import Settings
from orchestration.build import build_definitions

defs = build_definitions(Settings.from_env())
