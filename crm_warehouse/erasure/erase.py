"""`crm erase --customer-id`: forget a person everywhere under `CRM_HOME`, and keep them out.

In order, so that a crash part way leaves the person blocked and never half-restored:

1. find the person's footprint (every key their data is held under);
2. add keyed hashes of their identifiers to the blocklist, which every ingest honours;
3. in one warehouse transaction, delete their rows from raw, quarantine, identity, staging,
   marts and scores, moving the counts in the batch ledger from loaded to erased, and record
   the rewritten source files in the file ledger so they are not loaded again;
4. rewrite the source files, the sales database and every serving snapshot under `CRM_HOME`
   without them, and rewrite each DuckDB file so no deleted block survives;
5. append an audit record that names the erasure, not the person.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import sqlalchemy as sa

from crm_warehouse.erasure.blocklist import append_to_blocklist
from crm_warehouse.erasure.footprint import Footprint, UnknownCustomer, find_footprint
from crm_warehouse.erasure.keys import KEY_KINDS, ErasureKey, load_key
from crm_warehouse.erasure.rules import (
    SERVING_RULES,
    SERVING_WITHOUT_PERSONAL_DATA,
    WAREHOUSE_RULES,
    WAREHOUSE_WITHOUT_PERSONAL_DATA,
)
from crm_warehouse.erasure.scrub import (
    TokenMatcher,
    UncoveredTables,
    erase_from_sales_database,
    erase_quarantined,
    erase_rows,
    rewrite_database,
    without_person,
    write_atomically,
)
from crm_warehouse.ingest.batches import ensure_schema
from crm_warehouse.publish.serving import SERVING_STORAGE_VERSION
from crm_warehouse.settings import Settings
from crm_warehouse.target.postgres import Table, list_tables, push_tables
from crm_warehouse.target.spark import (
    EARLIER_ROWS_SUFFIX,
    export_table,
    exported_sources,
    sources_folder,
    spark_table_folder,
    spark_tables,
)


class AlreadyErased(LookupError):
    """The customer was erased before: nothing of theirs is left to remove."""


@dataclass
class ErasureReport:
    erasure_id: str
    requested_at: str
    finished_at: str = ""
    reference: str | None = None
    operator: str = ""
    subject: str = ""  # keyed hash of the customer id: lets an auditor confirm, not identify
    rows_removed: dict[str, int] = field(default_factory=dict)
    quarantined_rows_removed: int = 0
    source_rows_removed: dict[str, int] = field(default_factory=dict)
    files_rewritten: list[str] = field(default_factory=list)
    databases_rewritten: list[str] = field(default_factory=list)
    blocklist_entries: int = 0
    not_under_crm_home: list[str] = field(default_factory=list)
    # CRM_TARGET=postgres: the server's tables replaced by their erased working-store twins.
    postgres_tables_replaced: list[str] = field(default_factory=list)
    # Spark's copies under CRM_HOME/spark (CRM_TARGET=spark, now or before): each table's
    # Parquet files replaced by its erased working-store twin's.
    spark_tables_replaced: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def audit_path(settings: Settings) -> Path:
    return settings.erasure_dir / "audit.jsonl"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _inside(path: Path, home: Path) -> bool:
    return path.resolve().is_relative_to(home.resolve())


def _sales_file(settings: Settings) -> Path | None:
    url = sa.engine.make_url(settings.sales_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def _previous_erasure(settings: Settings, key: ErasureKey, customer_id: str) -> dict | None:
    path = audit_path(settings)
    if not path.exists():
        return None
    subject = key.digest("customer", customer_id)
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("subject") == subject:
            return record
    return None


def _truth_people(settings: Settings, footprint: Footprint) -> set[str]:
    """The generator's person ids for the person's records, so its truth files lose them too."""
    records = settings.truth_dir / "records.csv"
    if not records.exists():
        return set()
    keys = {
        *footprint.values("form"),
        *footprint.values("ticket"),
        *footprint.values("member"),
        *footprint.values("call"),
        *footprint.values("touch"),
    }
    with records.open(newline="", encoding="utf-8") as handle:
        return {row["person_id"] for row in csv.DictReader(handle) if row["record_key"] in keys}


def _source_files(settings: Settings) -> list[Path]:
    """Text files under CRM_HOME that hold source data: the sources tree and source dirs."""
    roots = {
        settings.sources_dir,
        settings.forms_dir,
        settings.callcentre_dir,
        settings.campaigns_dir,
    }
    sales_file = _sales_file(settings)
    files: set[Path] = set()
    for root in roots:
        if root.exists() and _inside(root, settings.crm_home):
            files.update(path for path in root.rglob("*") if path.is_file())
    return sorted(
        path
        for path in files
        if (sales_file is None or path.resolve() != sales_file.resolve())
        and not path.name.startswith(".")
    )


def _ledger_rows(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    old: bytes,
    matcher: TokenMatcher,
    csv_records: bool,
    batch_id: str,
    loaded_at: datetime,
) -> tuple[bytes, list[object] | None]:
    """The file without the person, and the ledger row saying what of it is loaded already.

    A file is known to the ledger by its content (it may have been loaded under another path,
    before CRM_HOME moved) or, when it grew since, by its path and the hash of what was loaded.
    """
    whole = conn.execute(
        "select source, content_hash, end_byte from meta.loaded_files where content_hash = ? "
        "order by loaded_at desc limit 1",
        [hashlib.sha256(old).hexdigest()],
    ).fetchall()
    latest = (
        whole
        or conn.execute(
            "select source, content_hash, end_byte from meta.loaded_files where path = ? "
            "order by loaded_at desc, end_byte desc limit 1",
            [path.as_posix()],
        ).fetchall()
    )
    if not latest:
        return without_person(old, matcher, csv_records=csv_records), None
    source, loaded_hash, end_byte = latest[0]
    end_byte = len(old) if whole else end_byte
    if hashlib.sha256(old[:end_byte]).hexdigest() != loaded_hash:
        # Rewritten since its last load: it loads whole next time, without the person.
        return without_person(old, matcher, csv_records=csv_records), None
    loaded = without_person(old[:end_byte], matcher, csv_records=csv_records)
    pending = without_person(old[end_byte:], matcher, csv_records=csv_records)
    row = [
        source,
        path.as_posix(),
        hashlib.sha256(loaded).hexdigest(),
        len(loaded),
        len(loaded),
        loaded.count(b"\n"),
        0,
        batch_id,
        loaded_at,
    ]
    return loaded + pending, row


def erase_customer(
    settings: Settings, customer_id: str, *, reference: str | None = None
) -> ErasureReport:
    """Erase the person behind `customer_id` from everything under `CRM_HOME`."""
    report = ErasureReport(
        erasure_id=uuid.uuid4().hex[:16],
        requested_at=_now(),
        reference=reference,
        operator=getpass.getuser(),
    )
    key = load_key(settings, create=True)
    assert key is not None  # created if missing
    conn = settings.connect_warehouse()
    try:
        ensure_schema(conn)  # a warehouse from before erasure existed lacks rows_erased
        postgres_tables = _postgres_tables(settings, conn)
        spark_copies = _spark_copies(settings, conn)
        try:
            footprint = find_footprint(conn, customer_id)
        except UnknownCustomer:
            previous = _previous_erasure(settings, key, customer_id)
            if previous is not None:
                raise AlreadyErased(
                    f"{customer_id} was erased on {previous['finished_at']} "
                    f"(erasure {previous['erasure_id']})"
                ) from None
            raise
        report.subject = key.digest("customer", footprint.customer_id) or ""
        entries = [
            (kind, digest)
            for kind in KEY_KINDS
            if kind != "customer"
            for value in footprint.values(kind)
            if (digest := key.digest(kind, value)) is not None
        ]
        append_to_blocklist(settings, report.erasure_id, entries)
        report.blocklist_entries = len(set(entries))

        matcher = TokenMatcher(footprint, _truth_people(settings, footprint))
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        rewrites: list[tuple[Path, bytes]] = []
        conn.execute("begin transaction")
        try:
            report.rows_removed = erase_rows(
                conn, footprint, WAREHOUSE_RULES, WAREHOUSE_WITHOUT_PERSONAL_DATA
            )
            report.quarantined_rows_removed = erase_quarantined(conn, footprint, matcher)
            for path in _source_files(settings):
                old = path.read_bytes()
                if b"\0" in old[:4096]:
                    continue  # not text
                new, ledger_row = _ledger_rows(
                    conn,
                    path,
                    old,
                    matcher,
                    path.suffix.lower() == ".csv",
                    f"erasure-{report.erasure_id}",
                    loaded_at,
                )
                if new == old:
                    continue
                rewrites.append((path, new))
                if ledger_row is not None:
                    # Without the rewritten file's size and time, which come after the
                    # commit: the next ingest reads the file once, finds its hash known and
                    # records them.
                    conn.execute(
                        "insert into meta.loaded_files (source, path, content_hash, "
                        "start_byte, end_byte, line_count, rows_in, batch_id, loaded_at) "
                        "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ledger_row,
                    )
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
    finally:
        conn.close()

    home = settings.crm_home
    for path, data in rewrites:
        write_atomically(path, data)
        report.files_rewritten.append(path.relative_to(home).as_posix())
    rewrite_database(settings.warehouse_path)
    report.databases_rewritten.append(settings.warehouse_path.relative_to(home).as_posix())
    if postgres_tables:
        # TRUNCATE and COPY: the erased rows' pages go with the old files, not left dead.
        with settings.connect_warehouse() as working:
            push_tables(working, settings.postgres, postgres_tables, settings.scratch_dir)
        report.postgres_tables_replaced = [f"{schema}.{table}" for schema, table in postgres_tables]
    if spark_copies:
        with settings.connect_warehouse() as working:
            report.spark_tables_replaced = _replace_spark_copies(working, spark_copies)
    for snapshot in sorted((settings.serving_dir / "snapshots").glob("*.duckdb")):
        _erase_from_snapshot(snapshot, footprint)
        report.databases_rewritten.append(snapshot.relative_to(home).as_posix())

    sales_file = _sales_file(settings)
    if sales_file is not None and sales_file.exists() and _inside(sales_file, home):
        report.source_rows_removed = erase_from_sales_database(
            settings.sales_url, settings.sales_tables, footprint
        )
        report.databases_rewritten.append(sales_file.resolve().relative_to(home).as_posix())
    else:
        report.not_under_crm_home.append("sales system (CRM_SALES_URL)")
    for variable, directory in (
        ("CRM_FORMS_DIR", settings.forms_dir),
        ("CRM_CALLCENTRE_DIR", settings.callcentre_dir),
        ("CRM_CAMPAIGNS_DIR", settings.campaigns_dir),
    ):
        if not _inside(directory, home):
            report.not_under_crm_home.append(f"source files in {variable}")
    # Scratch files of earlier loads may hold copies of source rows; nothing runs now (the
    # warehouse lock was ours), so the scratch directory can be emptied.
    if settings.scratch_dir.exists():
        for leftover in settings.scratch_dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()

    report.finished_at = _now()
    audit_path(settings).parent.mkdir(parents=True, exist_ok=True)
    with audit_path(settings).open("a", encoding="utf-8") as audit:
        audit.write(report.as_json() + "\n")
    return report


def _postgres_tables(settings: Settings, conn: duckdb.DuckDBPyConnection) -> list[Table]:
    """On the postgres target, every table of the server's: each must be a twin of a
    working-store table (a dbt source, model, seed or snapshot), whose erased rows replace
    its own. A table with no twin might hold the person and cannot be erased: stop first."""
    if settings.target != "postgres":
        return []
    on_server = list_tables(settings.postgres)
    working = set(
        conn.execute("select table_schema, table_name from information_schema.tables").fetchall()
    )
    unknown = [f"{schema}.{table}" for schema, table in on_server if (schema, table) not in working]
    if unknown:
        raise UncoveredTables(
            "PostgreSQL holds tables the working store does not, so they cannot be erased: "
            + ", ".join(unknown)
            + ". Drop them, or run the pipeline so they are mirrored, then erase again."
        )
    return on_server


def _spark_copies(settings: Settings, conn: duckdb.DuckDBPyConnection) -> list[tuple[Table, Path]]:
    """Every table Spark keeps under CRM_HOME, whatever the target is now: dbt's tables and
    the sources exported for it, with their folders. Each must be a twin of a working-store
    table (what dbt built on Spark is mirrored back, the sources came from it), whose erased
    rows replace its Parquet files. A table with no twin might hold the person: stop first."""
    home = settings.crm_home
    copies = [
        *((table, spark_table_folder(home, *table)) for table in spark_tables(home)),
        *((table, sources_folder(home) / table[0] / table[1]) for table in exported_sources(home)),
    ]
    if not copies:
        return []
    working = set(
        conn.execute("select table_schema, table_name from information_schema.tables").fetchall()
    )
    unknown = [
        f"{schema}.{table}"
        for (schema, table), _ in copies
        if (schema, table) not in working and not table.endswith(EARLIER_ROWS_SUFFIX)
    ]
    if unknown:
        raise UncoveredTables(
            "Spark's warehouse under CRM_HOME holds tables the working store does not, so "
            "they cannot be erased: " + ", ".join(unknown) + ". Drop them, or run the "
            "pipeline on Spark so they are mirrored, then erase again."
        )
    return copies


def _replace_spark_copies(
    working: duckdb.DuckDBPyConnection, copies: list[tuple[Table, Path]]
) -> list[str]:
    """Rewrite each Spark table's files from its erased twin; the old files, with the
    person's rows, are deleted. A history model's copy of its rows for the length of a run
    (`<table>__earlier`, left by a run that failed) is deleted: the next run makes it again."""
    replaced: list[str] = []
    for (schema, table), folder in copies:
        if table.endswith(EARLIER_ROWS_SUFFIX):
            shutil.rmtree(folder)
        else:
            export_table(working, (schema, table), folder)
        replaced.append(f"{schema}.{table}")
    return replaced


def _erase_from_snapshot(snapshot: Path, footprint: Footprint) -> None:
    """Erase from a copy (readers may hold the snapshot open), then rename it over the original."""
    working = snapshot.with_name(f".{snapshot.name}.scrub")
    working.unlink(missing_ok=True)
    copier = duckdb.connect()
    try:
        copier.execute(f"attach '{snapshot.as_posix()}' as live_snapshot (read_only)")
        copier.execute(
            f"attach '{working.as_posix()}' as working_copy "
            f"(storage_version '{SERVING_STORAGE_VERSION}')"
        )
        copier.execute("copy from database live_snapshot to working_copy")
    finally:
        copier.close()
    conn = duckdb.connect(str(working))
    try:
        erase_rows(conn, footprint, SERVING_RULES, SERVING_WITHOUT_PERSONAL_DATA)
    finally:
        conn.close()
    status = snapshot.stat()
    working.chmod(status.st_mode & 0o7777)
    if working.stat().st_gid != status.st_gid:
        os.chown(working, -1, status.st_gid)  # the unmasked twin's reader group
    rewrite_database(working, SERVING_STORAGE_VERSION)
    working.replace(snapshot)
