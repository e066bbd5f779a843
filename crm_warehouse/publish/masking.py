"""How personal data looks to the default reader of the serving snapshot, as SQL
expressions (the snapshot is written by DuckDB, so masking happens as it copies).

- name: the first character, the rest as `*` (张三丰 → 张**), as Chinese notices do;
- mobile number: the 3-digit prefix and the last 4 digits of the national number
  (+8613812345678 → 138****5678);
- e-mail: the first character of the local part and the domain (zhangsan@qq.com → z***@qq.com);
- birth date: the year only (its first of January), enough for age bands.
"""

from __future__ import annotations

from collections.abc import Callable

MaskExpression = Callable[[str], str]


def mask_name(column: str) -> str:
    return (
        f"case when {column} is null or length({column}) = 0 then {column} "
        f"else left({column}, 1) || repeat('*', greatest(length({column}) - 1, 1)) end"
    )


def mask_phone(column: str) -> str:
    # E.164 for mainland China is +86 and 11 digits; other numbers keep their last 4 digits.
    return (
        f"case when {column} is null then null "
        f"when {column} like '+86%' and length({column}) = 14 "
        f"then substr({column}, 4, 3) || '****' || right({column}, 4) "
        f"else repeat('*', greatest(length({column}) - 4, 0)) || right({column}, 4) end"
    )


def mask_email(column: str) -> str:
    return (
        f"case when {column} is null or position('@' in {column}) = 0 then null "
        f"else left({column}, 1) || '***@' || split_part({column}, '@', 2) end"
    )


def mask_birth_date(column: str) -> str:
    return f"cast(date_trunc('year', {column}) as date)"


MASKS: dict[str, MaskExpression] = {
    "name": mask_name,
    "phone": mask_phone,
    "email": mask_email,
    "birth_date": mask_birth_date,
}
