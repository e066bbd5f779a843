"""The README documents what the code enforces: its source contracts are generated from the
contract definitions and must not drift from them."""

from __future__ import annotations

from pathlib import Path

from crm_warehouse.ingest.contract_docs import README_END, README_START, contracts_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_contracts_match_the_enforced_contracts() -> None:
    text = README.read_text(encoding="utf-8")
    documented = text[text.index(README_START) + len(README_START) : text.index(README_END)]
    assert documented.strip() == contracts_markdown().strip()


def test_readme_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
