"""The probabilistic model behind identity resolution: Splink (Fellegi–Sunter), on DuckDB or Spark.

Which comparisons the model makes follows from the columns the records actually carry, so
the same code serves the demo's Chinese CRM records and a user's own frame. Training is EM
on two independent blockings (same phone, same email), so each comparison is learnt from
pairs that were not selected by it.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on

from crm_warehouse.identity.engines import SplinkEngine

log = logging.getLogger(__name__)

# A pair at or above this probability is the same person, unless the model file says otherwise.
DEFAULT_THRESHOLD = 0.9
MODEL_FILE = "identity_model.json"
SPLINK_FILE = "splink_model.json"

# How often the records of one person carry names sharing only a surname (or only a given
# name), or no part at all: misspellings, traditional characters and pinyin have levels above.
SHARED_NAME_PART_M = 0.002
DIFFERENT_NAME_M = 0.003

# Below this many records EM has too few pairs to learn from; the priors stand.
MIN_TRAINING_RECORDS = 2_000

# Columns a comparison is built for when at least this many records carry them.
_MIN_PRESENT = 2


@dataclass(frozen=True)
class IdentityModel:
    """A trained model: Splink's settings with its learnt m and u, and the match threshold."""

    splink_settings: dict[str, Any]
    threshold: float = DEFAULT_THRESHOLD
    trained_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    trained_on_records: int = 0
    columns: tuple[str, ...] = ()

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SPLINK_FILE).write_text(
            json.dumps(self.splink_settings, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        meta = {k: v for k, v in asdict(self).items() if k != "splink_settings"}
        meta["columns"] = list(self.columns)
        meta["splink_file"] = SPLINK_FILE
        path = directory / MODEL_FILE
        path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return path

    def splink_settings_in(self, dialect: str) -> dict[str, Any]:
        """The settings with their SQL in `dialect` ("duckdb", "spark"): a model trained on
        one engine keeps its learnt m and u, and the conditions of its levels and blocking
        rules are written again from the same comparisons for the other."""
        if self.splink_settings.get("sql_dialect", "duckdb") == dialect:
            return self.splink_settings
        frequencies = any(
            level.get("tf_adjustment_column")
            for comparison in self.splink_settings.get("comparisons", [])
            for level in comparison.get("comparison_levels", [])
        )
        rewritten = settings_for(self.columns, frequencies=frequencies).create_settings_dict(
            dialect
        )
        settings = copy.deepcopy(self.splink_settings)
        settings["sql_dialect"] = dialect
        settings["blocking_rules_to_generate_predictions"] = rewritten[
            "blocking_rules_to_generate_predictions"
        ]
        conditions = {
            comparison["output_column_name"]: [
                level["sql_condition"] for level in comparison["comparison_levels"]
            ]
            for comparison in rewritten["comparisons"]
        }
        for comparison in settings["comparisons"]:
            levels = comparison["comparison_levels"]
            written = conditions[comparison["output_column_name"]]
            if len(written) != len(levels):
                raise ValueError(
                    f"comparison {comparison['output_column_name']} has {len(levels)} levels, "
                    f"the settings for these columns {len(written)}: retrain the model"
                )
            for level, condition in zip(levels, written, strict=True):
                level["sql_condition"] = condition
        return settings

    @classmethod
    def load(cls, directory: Path) -> IdentityModel | None:
        path = directory / MODEL_FILE
        if not path.exists():
            return None
        meta = json.loads(path.read_text(encoding="utf-8"))
        settings = json.loads((directory / meta["splink_file"]).read_text(encoding="utf-8"))
        return cls(
            splink_settings=settings,
            threshold=float(meta["threshold"]),
            trained_at=str(meta["trained_at"]),
            trained_on_records=int(meta["trained_on_records"]),
            columns=tuple(meta["columns"]),
        )


def present_columns(engine: SplinkEngine, table: str) -> tuple[str, ...]:
    """The comparable columns at least a couple of records in `table` fill."""
    candidates = [
        "name_norm",
        "phone",
        "email",
        "birth_date",
        "gender",
        "id_card",
        "address",
        "city",
        "postcode",
    ]
    counts = engine.fetch(
        "select " + ", ".join(f"count({c}) as {c}" for c in candidates) + f" from {table}"
    )
    return tuple(c for c in candidates if counts[c][0].as_py() >= _MIN_PRESENT)


# Starting m and u per level (the null level excluded), from what these fields are like in
# CRM data. Training replaces them; on a frame too small to train on, they are the model.
_PRIORS: dict[str, tuple[list[float], list[float]]] = {
    "name": ([0.75, 0.2, 0.045, 0.002, 0.003], [0.0005, 0.0002, 0.002, 0.08, 0.9173]),
    "phone": ([0.85, 0.15], [0.00001, 0.99999]),
    "email": ([0.9, 0.03, 0.07], [0.00001, 0.00001, 0.99998]),
    "birth_date": ([0.9, 0.05, 0.05], [0.0001, 0.001, 0.9989]),
    "id_card": ([0.95, 0.03, 0.02], [1e-7, 1e-6, 0.9999989]),
    "address": ([0.6, 0.2, 0.2], [1e-5, 1e-4, 0.99989]),
    "city": ([0.9, 0.1], [0.05, 0.95]),
    "gender": ([0.97, 0.03], [0.5, 0.5]),
    "postcode": ([0.8, 0.2], [0.001, 0.999]),
}


def _with_prior(name: str, comparison: Any) -> Any:
    m, u = _PRIORS[name]
    return comparison.configure(m_probabilities=m, u_probabilities=u)


def _name_comparison(frequencies: bool) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            cll.NullLevel("name_norm"),
            cll.ExactMatchLevel("name_norm", term_frequency_adjustments=frequencies),
            # Traditional characters, homophone slips and pinyin spellings sound the same.
            cll.ExactMatchLevel("name_key").configure(label_for_charts="same sounds"),
            # One slip that sounds nearly the same (玲/琳: ling/lin) in a name of three or
            # more characters. Siblings often share a generation character (张宇志, 张宇鹏):
            # one character apart, but they sound different.
            cll.CustomLevel(
                "char_levenshtein(name_norm_l, name_norm_r) <= 1 "
                "and least(length(name_norm_l), length(name_norm_r)) >= 3 "
                "and levenshtein(name_key_l, name_key_r) <= 1",
                label_for_charts="one character apart, sounding alike",
            ),
            # Family members share a surname and a phone. Left to EM, a shared phone makes
            # families look like matches and the weight of this level drifts up until they
            # merge; its m stays fixed at how rarely one person's names share only a part.
            cll.ArrayIntersectLevel("name_tokens", min_intersection=1).configure(
                label_for_charts="share a surname or given name",
                m_probability=SHARED_NAME_PART_M,
                fix_m_probability=True,
            ),
            cll.ElseLevel().configure(m_probability=DIFFERENT_NAME_M, fix_m_probability=True),
        ],
        comparison_description="name: exact, same sounds, one character apart, shared part",
    )


def _comparisons(columns: tuple[str, ...], frequencies: bool) -> list[Any]:
    built: dict[str, Any] = {}
    if "name_norm" in columns:
        built["name"] = _name_comparison(frequencies)
    if "phone" in columns:
        built["phone"] = cl.ExactMatch("phone").configure(term_frequency_adjustments=frequencies)
    if "email" in columns:
        built["email"] = cl.CustomComparison(
            output_column_name="email",
            comparison_levels=[
                cll.NullLevel("email"),
                cll.ExactMatchLevel("email", term_frequency_adjustments=frequencies),
                cll.LevenshteinLevel("email", 1),
                cll.ElseLevel(),
            ],
        )
    if "birth_date" in columns:
        built["birth_date"] = cl.CustomComparison(
            output_column_name="birth_date",
            comparison_levels=[
                cll.NullLevel("birth_date"),
                cll.ExactMatchLevel("birth_date"),
                # Day and month swapped, or one digit typed wrong.
                cll.LevenshteinLevel("birth_date", 1),
                # When one source alone records it, no pair of one person's records
                # shows how often they disagree: EM would learn it from look-alikes.
                cll.ElseLevel().configure(fix_m_probability=True),
            ],
        )
    if "id_card" in columns:
        built["id_card"] = cl.LevenshteinAtThresholds("id_card", [1])
    if "address" in columns:
        built["address"] = cl.CustomComparison(
            output_column_name="address",
            comparison_levels=[
                cll.NullLevel("address"),
                cll.ExactMatchLevel("address"),
                cll.CustomLevel("char_levenshtein(address_l, address_r) <= 3"),
                cll.ElseLevel(),
            ],
        )
    if "gender" in columns:
        built["gender"] = cl.CustomComparison(
            output_column_name="gender",
            comparison_levels=[
                cll.NullLevel("gender"),
                cll.ExactMatchLevel("gender"),
                cll.ElseLevel().configure(fix_m_probability=True),
            ],
        )
    for column in ("city", "postcode"):
        if column in columns:
            built[column] = cl.ExactMatch(column)
    return [_with_prior(name, comparison) for name, comparison in built.items()]


def blocking_rules(columns: tuple[str, ...]) -> list[Any]:
    """Which pairs get scored at all: records sharing a phone, an email, an id card, or the
    sound of a name within a city or birth date (people who changed their phone)."""
    rules: list[Any] = []
    for column in ("phone", "email", "id_card"):
        if column in columns:
            rules.append(block_on(column))
    if "name_norm" in columns:
        for column in ("city", "birth_date", "postcode"):
            if column in columns:
                rules.append(block_on("name_key", column))
    return rules


def settings_for(columns: tuple[str, ...], *, frequencies: bool = True) -> SettingsCreator:
    """Splink settings for records carrying `columns`; `frequencies` turns on term-frequency
    adjustments (a common name says less than a rare one), which need many records."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=_comparisons(columns, frequencies),
        blocking_rules_to_generate_predictions=blocking_rules(columns),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        max_iterations=20,
    )


def train(
    engine: SplinkEngine,
    table: str,
    threshold: float = DEFAULT_THRESHOLD,
    max_u_pairs: float = 2e6,
    seed: int = 7,
) -> IdentityModel:
    """Fit m and u for the prepared records in `table` of a Splink engine."""
    columns = present_columns(engine, table)
    count = engine.scalar(f"select count(*) from {table}")
    settings = settings_for(columns, frequencies=count >= MIN_TRAINING_RECORDS)
    db_api = engine.api()
    linker = Linker(db_api.register(table), settings)
    certain = [block_on("phone", "name_key")] if "phone" in columns else []
    if "email" in columns:
        certain.append(block_on("email"))
    if certain:
        try:
            linker.training.estimate_probability_two_random_records_match(certain, recall=0.8)
        except ValueError as reason:
            # A handful of records, nearly all certain matches: the estimate is meaningless
            # and the default prior (1 in 10,000) stands.
            log.info("prior match probability kept: %s", reason)
    if count < MIN_TRAINING_RECORDS:
        log.info("%d records are too few to train on: using the prior m and u", count)
        return IdentityModel(
            splink_settings=linker.misc.save_model_to_json(out_path=None),
            threshold=threshold,
            trained_on_records=0,
            columns=columns,
        )
    linker.training.estimate_u_using_random_sampling(max_pairs=max_u_pairs, seed=seed)
    # EM on pairs that share one field trains every other comparison; with two such passes
    # each comparison is trained on pairs its own field did not select.
    em_blocks = [c for c in ("phone", "email") if c in columns]
    if len(em_blocks) < 2 and "name_norm" in columns:
        em_blocks.append("name_key")
    for column in em_blocks:
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(column), fix_u_probabilities=True
        )
    trained = linker.misc.save_model_to_json(out_path=None)
    return IdentityModel(
        splink_settings=trained,
        threshold=threshold,
        trained_on_records=count,
        columns=columns,
    )
