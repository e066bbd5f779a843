"""The demo source generator (`crm generate`): realistic, messy, deterministic, with truth."""

from crm_warehouse.generate.generator import Manifest, append_day, generate

__all__ = ["Manifest", "append_day", "generate"]
