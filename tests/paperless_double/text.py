"""Deterministic document text: ~3 KB of letters, invoices and minutes in several scripts.

`document_text(seed, doc_id)` always returns the same text for the same pair, so a corpus
never has to store 100,000 bodies; the double calls it whenever it serialises `content`.
"""

from __future__ import annotations

import random
from functools import lru_cache

FIRST = ["Jürgen", "Émilie", "Zoë", "Łukasz", "Yuki", "Björn", "Chloé", "Ahmet", "Mei", "José"]
LAST = ["Müller", "Groß", "Lefèvre", "Nguyễn", "田中", "Øvergaard", "Schäfer", "García", "王"]
CITIES = ["München", "Köln", "Zürich", "Paris", "北京", "東京", "Wien", "Straßburg"]
MONEY = ["{n:.2f} €", "EUR {n:,.2f}", "$ {n:,.2f}", "¥ {n:,.0f}", "{n:.2f} CHF", "£ {n:,.2f}"]
EMOJI = ["", "", "", " 📎", " 👍", " 🏠", " ❤️", " 🔒", " ☕", " 👨‍👩‍👧"]

PARAGRAPHS = [
    # German invoice
    "Sehr geehrte(r) {name},\n\nvielen Dank für Ihre Bestellung vom {date}. Anbei erhalten "
    "Sie unsere Rechnung Nr. {ref} über {money} für die im {month} erbrachten Leistungen. "
    "Bitte überweisen Sie den Betrag innerhalb von {days} Tagen unter Angabe der "
    "Rechnungsnummer auf das unten genannte Konto (IBAN DE{iban}).",
    # German tenancy
    "Mietvertrag über Wohnraum zwischen {name} (Vermieter) und {name2} (Mieter). Die Wohnung "
    "in der Schloßstraße {days}, {city}, wird ab dem {date} vermietet. Die monatliche "
    "Grundmiete beträgt {money}; hinzu kommen Vorauszahlungen für Betriebskosten.",
    # French
    "Madame, Monsieur {name},\n\nnous vous remercions de votre commande du {date}. Veuillez "
    "trouver ci-joint notre facture n° {ref} d'un montant de {money}, payable sous {days} "
    "jours. Le contrat d'assurance habitation pour le logement situé à {city} est reconduit.",
    # English
    "Dear {name},\n\nthank you for your order of {date}. Please find enclosed our invoice "
    "no. {ref} for the services rendered in {month}. The total amount of {money} is due "
    "within {days} days of receipt. Kindly quote the invoice number as reference.",
    "Minutes of the meeting held on {date} in {city}. Present: {name}, {name2}. Item {days}: "
    "the budget for the next quarter was approved with minor amendments. Warranty "
    "certificate: the product with serial number SN-{serial} is covered for 3 years.",
    # Chinese
    "尊敬的{name}：感谢您于{date}的订购。随函附上发票（编号：{ref}），金额为{money}。"
    "请在{days}天内付款。如有任何疑问，请随时与我们联系。此致敬礼。",
    # Japanese receipt
    "領収書 {ref}：{name}様、{date}に{city}にてお支払いいただいた{money}を確かに受領しました。",
    # Mixed punctuation and scripts
    "Notes: \"quotes\", 'single', <angle brackets>, ampersand & co., back\\slash, tab\there, "
    "percent 100 %, math ∑ x² ≤ ∞, arrows → ⇒, Greek αβγ, Cyrillic Привет, Hebrew שלום, "
    "Arabic مرحبا. Ref. {ref}.",
]
POOL_SIZE = 1024
MONTHS = ["Januar 2019", "Juli 2025", "mars 2021", "October 2023", "2024年5月"]


def _fill(rng: random.Random, template: str) -> str:
    n = rng.uniform(10, 5000)
    return template.format(
        name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        name2=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        date=f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2010, 2025)}",
        ref=f"{rng.choice(['RE', 'INV', 'F', 'RG'])}-{rng.randint(2012, 2025)}-"
        f"{rng.randint(0, 99999):05d}",
        money=rng.choice(MONEY).format(n=n),
        month=rng.choice(MONTHS),
        days=rng.choice([7, 14, 30, 60]),
        iban=rng.randint(10**19, 10**20 - 1),
        city=rng.choice(CITIES),
        serial="".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(10)),
    ) + rng.choice(EMOJI)


@lru_cache(maxsize=8)
def _pool(seed: int) -> tuple[str, ...]:
    # Filling templates costs ~40 µs each; a benchmark fetches 100,000 texts, so documents
    # draw from a pool of pre-filled paragraphs instead of filling their own.
    rng = random.Random(seed)
    return tuple(_fill(rng, rng.choice(PARAGRAPHS)) for _ in range(POOL_SIZE))


def document_text(seed: int, doc_id: int, target: int = 3000) -> str:
    """About `target` characters of text, the same every time for (seed, doc_id)."""
    pool = _pool(seed)
    rng = random.Random(seed * 1_000_003 + doc_id)
    parts: list[str] = []
    size = 0
    while size < target:
        paragraph = pool[rng.randrange(POOL_SIZE)]
        parts.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(parts)
