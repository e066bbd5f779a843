"""How one true value gets spelled in a source: the messiness real CRM data has."""

from __future__ import annotations

import random

from crm_warehouse.generate import pools

_FULLWIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})


def fullwidth(text: str) -> str:
    return text.translate(_FULLWIDTH)


def phone(rnd: random.Random, mobile: str) -> str:
    r = rnd.random()
    if r < 0.55:
        return mobile
    if r < 0.65:
        return f"+86 {mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"
    if r < 0.73:
        return f"0086 {mobile}"
    if r < 0.81:
        return f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}"
    if r < 0.87:
        return f"+86{mobile}"
    if r < 0.92:
        return fullwidth(mobile)
    if r < 0.96:
        return f"86-{mobile}"
    return f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"


def email(rnd: random.Random, address: str | None) -> str | None:
    if address is None:
        return None
    r = rnd.random()
    if r < 0.8:
        return address
    if r < 0.9:
        local, domain = address.split("@")
        return f"{local.capitalize()}@{domain.upper()}"
    if r < 0.95:
        return f" {address} "
    return address.replace("@", "＠")


def name(
    rnd: random.Random,
    surname: str,
    given: str,
    pinyin_surname: str,
    pinyin_given: str,
    exact_share: float = 0.8,
) -> str:
    """A person's name as typed into a source: mostly exact, else a typo, traditional or pinyin."""
    r = rnd.random()
    if r < exact_share:
        return surname + given
    slips = (r - exact_share) / (1 - exact_share)
    if slips < 0.35:
        position = rnd.randrange(len(given))
        slipped = pools.HOMOPHONES.get(given[position], given[position])
        return surname + given[:position] + slipped + given[position + 1 :]
    if slips < 0.6:
        return "".join(pools.TRADITIONAL.get(c, c) for c in surname + given)
    if slips < 0.8:
        family, personal = pinyin_surname.capitalize(), pinyin_given.capitalize()
        return rnd.choice(
            [f"{family} {personal}", f"{personal} {family}", f"{family.upper()} {personal}"]
        )
    if slips < 0.9:
        return rnd.choice([f"{surname} {given}", f"{surname}\u3000{given}"])
    return f" {surname}{given} "


def city(rnd: random.Random, city_index: int) -> str:
    short, province, pinyin, _ = pools.CITIES[city_index]
    r = rnd.random()
    if r < 0.5:
        return short
    if r < 0.8:
        return short if short == "香港" else f"{short}市"
    if r < 0.9:
        return pinyin
    if province.endswith("市") or short == "香港":
        return province
    return f"{province}{short}市"
