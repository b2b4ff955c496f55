"""A deterministic corpus of realistic automations, for the benchmarks.

``corpus_text(n)`` returns ``n`` automations of about 8-10 lines each, in canonical
format, that use every construct of the language: the four built-in triggers, the
built-in actions, ``wait``, nested ``if`` / ``else if`` / ``else``, ``and`` / ``or`` /
``not``, comparisons, ``in`` / ``not in`` lists, money, percentages, durations, strings
with escapes and ``{{ placeholders }}``, and comments. The same ``n`` and ``seed`` always
give the same text, so figures taken on different days compare.

Run as a script to write a corpus file: ``python bench/corpus.py out.hz --n 1000``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

DEFAULT_N = 1000
DEFAULT_SEED = 20240601
INDENT = "  "

# The conditions each trigger can test, written against the fields its context provides
# (`huntaze plugins` lists them): every fan field for every trigger, plus the event's own.
COMMON_CONDITIONS = (
    "fan.total_spent >= {money}",
    "fan.total_spent < {money}",
    '"{tag}" not in fan.tags',
    '"{tag}" in fan.tags',
    "fan.country in {countries}",
    "fan.country not in {countries}",
    "fan.message_count > {count}",
    "fan.message_count <= {count}",
    'fan.country != "{country}"',
)
TRIGGER_CONDITIONS = {
    "new_subscriber": ('fan.country == "{country}"', "fan.total_spent == $0"),
    "message_received": (
        'event.text == "{keyword}"',
        "event.text in {keywords}",
        '"{keyword}" in event.text',
    ),
    "purchase_completed": (
        "event.amount >= {money}",
        "event.amount < {money}",
        'event.item == "{item}"',
        "event.item in {items}",
    ),
    "subscription_expiring": (
        "event.days_left <= {small_days}",
        "event.days_left > {small_days}",
        "event.renewal_price > {money}",
    ),
}
NAME_STEMS = {
    "new_subscriber": ("Welcome new subscribers", "Greet trial fans", "Onboarding discount"),
    "message_received": ("Answer keyword", "Auto-reply to DMs", "Price question reply"),
    "purchase_completed": ("Thank buyers", "Tag big spenders", "Upsell after purchase"),
    "subscription_expiring": ("Win back expiring fans", "Renewal reminder", "Last chance"),
}
TAGS = ("vip", "welcomed", "whale", "buyer", "lapsed", "trial", "engaged", "winback")
COUNTRIES = ("US", "CA", "GB", "FR", "DE", "ES", "BR", "AU")
KEYWORDS = ("price", "custom", "hello", "discount", "bundle")
ITEMS = ("ppv", "bundle", "tip", "custom")
MESSAGES = (
    "Hey {{ fan.name }}, thanks for subscribing!",
    "Welcome back, {{ fan.name }}!",
    "Thank you so much {{ fan.name }} 😍",
    "{{ fan.name }}, your VIP perks are waiting.",
    'Hi {{ fan.name }}! Reply \\"yes\\" for a surprise.',
    "Don't miss out, {{ fan.name }}: 24 hours left.\\nSee you soon!",
    "Here is a little something for you, {{ fan.name }}.",
    "Thanks for the tip, {{ fan.name }} ❤️",
)
OWN_LINE_COMMENTS = (
    "# Keep this gentle: the fan just arrived.",
    "# Agency request: do not discount twice in a week.",
    "# TODO: review the wording with the creator.",
    "# Big spenders get their own path.",
)
END_OF_LINE_COMMENTS = ("# tuned in March", "# see pricing sheet", "# A/B test: variant B")


class _Writer:
    """Draws the parts of one automation from a seeded random generator."""

    def __init__(self, rng: random.Random, trigger: str) -> None:
        self.rng = rng
        self.trigger = trigger

    def pick(self, options):
        return self.rng.choice(options)

    def condition_atom(self, negatable: bool = False) -> str:
        patterns = COMMON_CONDITIONS + TRIGGER_CONDITIONS[self.trigger]
        if negatable:
            # `not (x not in y)` is legal but no one would write it.
            patterns = tuple(p for p in patterns if " not " not in p and "!=" not in p)
        pattern = self.pick(patterns)
        rng = self.rng
        return pattern.format(
            money=self.money(),
            tag=self.pick(TAGS),
            countries=_str_list(rng.sample(COUNTRIES, rng.randint(1, 3))),
            country=self.pick(COUNTRIES),
            keywords=_str_list(rng.sample(KEYWORDS, rng.randint(2, 3))),
            keyword=self.pick(KEYWORDS),
            item=self.pick(ITEMS),
            items=_str_list(rng.sample(ITEMS, 2)),
            count=rng.randint(1, 200),
            small_days=rng.randint(1, 7),
        )

    def condition(self) -> str:
        shape = self.rng.random()
        if shape < 0.35:
            return self.condition_atom()
        if shape < 0.6:
            return f"{self.condition_atom()} and {self.condition_atom()}"
        if shape < 0.8:
            return f"{self.condition_atom()} or {self.condition_atom()}"
        if shape < 0.9:
            # Canonical text keeps these parentheses: `not a in b` reads like `not in`.
            return f"not ({self.condition_atom(negatable=True)})"
        # `and` binds tighter than `or`: parentheses are needed only around the `or`.
        return f"({self.condition_atom()} or {self.condition_atom()}) and {self.condition_atom()}"

    def money(self) -> str:
        # One currency per corpus, as for one creator; the lexer cost is the same for € and £.
        return self.pick(("$10", "$25", "$50", "$100", "$9.99", "$19.50", "$250"))

    def action(self) -> str:
        kind = self.rng.random()
        if kind < 0.4:
            return f'send_message text: "{self.pick(MESSAGES)}"'
        if kind < 0.6:
            return f'add_tag tag: "{self.pick(TAGS)}"'
        if kind < 0.7:
            return f'remove_tag tag: "{self.pick(TAGS)}"'
        discount = self.pick(("10%", "15%", "20%", "25%", "12.5%"))
        valid = self.pick(("24h", "48h", "72h", "3d", "1w"))
        if self.rng.random() < 0.5:
            return f"create_offer discount: {discount}, valid_for: {valid}"
        return f'create_offer discount: {discount}, valid_for: {valid}, name: "Fan {discount} off"'

    def simple_step(self) -> str:
        if self.rng.random() < 0.2:
            return f"wait {self.pick(('30m', '2h', '12h', '1d', '2d', '1w'))}"
        return self.action()


def _str_list(items) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _steps(writer: _Writer, budget: int, depth: int) -> list[str]:
    """Lines of steps (unindented relative to their block) using exactly ``budget`` lines."""
    lines: list[str] = []
    while budget > 0:
        block = _choose_block(writer, budget, depth)
        lines.extend(block)
        budget -= len(block)
    return lines


def _choose_block(writer: _Writer, budget: int, depth: int) -> list[str]:
    rng = writer.rng
    if budget >= 3 and depth < 2 and rng.random() < 0.55:
        return _if_block(writer, budget, depth)
    step = writer.simple_step()
    if rng.random() < 0.08:
        step += "  " + writer.pick(END_OF_LINE_COMMENTS)
    if budget >= 2 and rng.random() < 0.08:
        return [writer.pick(OWN_LINE_COMMENTS), step]
    return [step]


def _if_block(writer: _Writer, budget: int, depth: int) -> list[str]:
    """An ``if`` with, budget allowing, ``else if`` and ``else`` arms; each arm ≥ 1 step."""
    rng = writer.rng
    arms = 1
    if budget >= 5 and rng.random() < 0.6:
        arms = 2
    if budget >= 7 and rng.random() < 0.4:
        arms = 3
    # One line per arm header plus the closing brace; the rest is shared among arms.
    inner = rng.randint(arms, budget - arms - 1)
    sizes = _split(rng, inner, arms)
    lines: list[str] = []
    for index, size in enumerate(sizes):
        if index == 0:
            lines.append(f"if {writer.condition()} {{")
        elif index == arms - 1 and arms > 1 and rng.random() < 0.7:
            lines.append("} else {")
        else:
            lines.append(f"}} else if {writer.condition()} {{")
        lines.extend(INDENT + line for line in _steps(writer, size, depth + 1))
    lines.append("}")
    return lines


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    sizes = [1] * parts
    for _ in range(total - parts):
        sizes[rng.randrange(parts)] += 1
    return sizes


def automation_text(rng: random.Random, index: int) -> str:
    """One automation of 8-10 lines (comments included), in canonical format."""
    trigger = rng.choice(tuple(TRIGGER_CONDITIONS))
    writer = _Writer(rng, trigger)
    target = rng.randint(8, 10)
    header: list[str] = []
    if rng.random() < 0.15:
        header.append(writer.pick(OWN_LINE_COMMENTS))
    header.append(f'automation "{writer.pick(NAME_STEMS[trigger])} #{index}" {{')
    inside: list[str] = []
    if rng.random() < 0.3:
        inside.append(f'description "Generated automation number {index} for {trigger}"')
    when = f"when {trigger}"
    if trigger == "subscription_expiring" and rng.random() < 0.5:
        when += f" days_before: {rng.randint(1, 7)}"
    inside.append(when)
    budget = target - len(header) - len(inside) - 1
    inside.extend(_steps(writer, budget, 0))
    return "\n".join([*header, *(INDENT + line for line in inside), "}"]) + "\n"


def corpus_text(n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> str:
    """``n`` automations separated by blank lines: the same text for the same arguments."""
    rng = random.Random(seed)
    return "\n".join(automation_text(rng, index) for index in range(1, n + 1))


def write_corpus(path: str | Path, n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> Path:
    """Write ``corpus_text(n, seed)`` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(corpus_text(n, seed), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="where to write the corpus (.hz)")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="number of automations")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    path = write_corpus(args.path, args.n, args.seed)
    print(f"wrote {args.n} automations to {path}")


if __name__ == "__main__":
    main()
