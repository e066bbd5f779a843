"""Settings: CRM_HOME for all state, CRM_* variables over the config file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_warehouse.settings import Settings, SettingsError


def test_everything_lives_under_crm_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"CRM_HOME": str(tmp_path)})
    assert settings.warehouse_path == tmp_path / "warehouse.duckdb"
    assert settings.forms_dir == tmp_path / "sources" / "forms"
    assert settings.sales_url == f"sqlite:///{tmp_path / 'sources' / 'sales' / 'sales.db'}"
    assert settings.dagster_home == tmp_path / "dagster"


def test_environment_beats_config_file_beats_defaults(tmp_path: Path) -> None:
    (tmp_path / "crm.toml").write_text(
        'forms_dir = "/data/forms"\nsales_url = "postgresql://shop/db"\n'
        '[sales_tables]\norders = "shop.sales_order"\n',
        encoding="utf-8",
    )
    settings = Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_FORMS_DIR": "/mnt/forms"})
    assert settings.forms_dir == Path("/mnt/forms")
    assert settings.sales_url == "postgresql://shop/db"
    assert settings.sales_tables["orders"] == "shop.sales_order"
    assert settings.sales_tables["customers"] == "customers"


def test_a_broken_config_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / "crm.toml").write_text("forms_dir = ", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"crm\.toml"):
        Settings.from_env({"CRM_HOME": str(tmp_path)})


def test_serving_settings_default_to_five_masked_snapshots(tmp_path: Path) -> None:
    settings = Settings.from_env({"CRM_HOME": str(tmp_path)})
    assert settings.serving_dir == tmp_path / "serving"
    assert settings.serving_keep == 5
    assert settings.serving_unmasked_group is None
    configured = Settings.from_env(
        {"CRM_HOME": str(tmp_path), "CRM_SERVING_KEEP": "3", "CRM_SERVING_UNMASKED_GROUP": "crm"}
    )
    assert (configured.serving_keep, configured.serving_unmasked_group) == (3, "crm")
    with pytest.raises(SettingsError, match="at least 2"):
        Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_SERVING_KEEP": "1"})


def test_the_erasure_key_comes_from_the_environment_only_and_never_shows(tmp_path: Path) -> None:
    (tmp_path / "crm.toml").write_text('erasure_key = "from-the-file"\n', encoding="utf-8")
    assert Settings.from_env({"CRM_HOME": str(tmp_path)}).erasure_key is None
    settings = Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_ERASURE_KEY": "s3cret"})
    assert settings.erasure_key == "s3cret"
    assert "s3cret" not in repr(settings)


def test_operations_settings_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "crm.toml").write_text('schedule_cron = "15 7 * * *"\n', encoding="utf-8")
    settings = Settings.from_env(
        {
            "CRM_HOME": str(tmp_path),
            "CRM_ALERT_WEBHOOK_URL": "https://hooks.example/T0KEN",
            "CRM_FRESHNESS_MAX_LAG_DAYS": "3",
        }
    )
    assert settings.schedule_cron == "15 7 * * *"
    assert settings.freshness_max_lag_days == 3
    assert "T0KEN" not in repr(settings)
    with pytest.raises(SettingsError, match="CRM_FRESHNESS_MAX_LAG_DAYS"):
        Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_FRESHNESS_MAX_LAG_DAYS": "two"})


def test_the_target_and_its_postgresql_connection_come_from_the_environment(
    tmp_path: Path,
) -> None:
    default = Settings.from_env({"CRM_HOME": str(tmp_path)})
    assert default.target == "duckdb"
    settings = Settings.from_env(
        {
            "CRM_HOME": str(tmp_path),
            "CRM_TARGET": "postgres",
            "CRM_PG_HOST": "db.internal",
            "CRM_PG_PORT": "6432",
            "CRM_PG_USER": "etl",
            "CRM_PG_PASSWORD": "pa55/word@",
            "CRM_PG_DATABASE": "crm_prod",
        }
    )
    assert settings.target == "postgres"
    assert settings.postgres.sqlalchemy_url == (
        "postgresql+psycopg2://etl:pa55%2Fword%40@db.internal:6432/crm_prod"
    )
    assert "pa55" not in repr(settings)
    assert default.identity_engine == default.scoring_engine == "duckdb"
    assert default.scoring_driver_rows == 2_000_000
    spark = Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_TARGET": "spark"})
    assert spark.target == "spark" and spark.identity_engine == spark.scoring_engine == "spark"
    mixed = Settings.from_env(
        {
            "CRM_HOME": str(tmp_path),
            "CRM_TARGET": "spark",
            "CRM_IDENTITY_ENGINE": "duckdb",
            "CRM_SCORING_DRIVER_ROWS": "500000",
        }
    )
    assert (mixed.identity_engine, mixed.scoring_engine) == ("duckdb", "spark")
    assert mixed.scoring_driver_rows == 500_000
    for variable, value in (
        ("CRM_IDENTITY_ENGINE", "pandas"),
        ("CRM_SCORING_ENGINE", "polars"),
        ("CRM_SCORING_DRIVER_ROWS", "0"),
        ("CRM_SCORING_DRIVER_ROWS", "many"),
    ):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({"CRM_HOME": str(tmp_path), variable: value})
    with pytest.raises(SettingsError, match="CRM_TARGET"):
        Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_TARGET": "snowflake"})
    with pytest.raises(SettingsError, match="CRM_PG_PORT"):
        Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_PG_PORT": "fivefourthreetwo"})
    with pytest.raises(SettingsError, match="CRM_PARTITIONS_START"):
        Settings.from_env({"CRM_HOME": str(tmp_path), "CRM_PARTITIONS_START": "last year"})
