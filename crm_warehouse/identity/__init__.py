"""Identity resolution: many source records of one person → one stable `customer_id`."""

from crm_warehouse.identity.model import IdentityModel
from crm_warehouse.identity.records import RECORD_COLUMNS, prepare
from crm_warehouse.identity.resolve import resolve

__all__ = ["RECORD_COLUMNS", "IdentityModel", "prepare", "resolve"]
