"""Writes ``examples/events.jsonl``: a week of one creator's fan activity, for ``huntaze run``.

    python examples/make_events.py            # rewrites examples/events.jsonl
    python examples/make_events.py --check    # exit 1 if the file differs from the output

The week is simulated from a fixed seed, so the file is the same every time: fans who
subscribed earlier and new subscribers message the creator (prices, the menu, customs,
small talk), buy photo sets, videos, bundles and customs, tip, and see their monthly
subscription run out (notices 7, 3 and 1 days ahead). Each event carries the fan as the
platform knows them at that moment: ``total_spent`` grows with every purchase and
``message_count`` with every message.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

OUTPUT = Path(__file__).with_name("events.jsonl")
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
WEEK = timedelta(days=7)
SUBSCRIPTION = timedelta(days=30)
RENEWAL_PRICE = 9.99
SEED = 20261116

NAMES = [
    "Jake Miller", "Liam Carter", "Noah Brooks", "Ethan Price", "Mason Reed", "Lucas Gray",
    "Oliver Hayes", "Elijah Ward", "James Cole", "Ben Foster", "Henry Stone", "Leo Hart",
    "Sam Porter", "Owen Blake", "Ryan Mercer", "Dylan Shaw", "Caleb Ross", "Nathan Fox",
    "Aaron Lane", "Tyler Quinn", "Marcus Bell", "Adam Kerr", "Chris Nolan", "Daniel Park",
    "Evan Moss", "Felix Dunn", "Gavin Rhodes", "Hugo Marsh", "Ian Doyle", "Jonas Weber",
    "Kai Jensen", "Louis Martin", "Mateo García", "Nico Rossi", "Pablo Ruiz", "Quentin Roy",
    "Rafael Lima", "Simon Lefèvre", "Theo Dubois", "Victor Hugo Silva", "Will Turner",
    "Xavier Moreau", "Yusuf Demir", "Zach Ellis", "Arjun Mehta", "Bruno Costa",
]  # fmt: skip
COUNTRIES = ["US"] * 9 + ["GB"] * 3 + ["CA"] * 2 + ["FR", "BE", "ES", "MX", "DE", "AU", "IT"]

SMALL_TALK = [
    "hey 😊",
    "good morning beautiful ☀️",
    "you looked amazing in your last post",
    "how was your weekend?",
    "just wanted to say hi",
    "love your content!!",
    "happy monday 💕",
    "what are you up to tonight?",
    "your smile is everything",
]
QUESTIONS = [
    "what's the price for a video?",
    "how much is the bundle?",
    "Price list please?",
    "do you have a menu?",
    "can I see the menu",
    "how much for a custom?",
    "do you do custom requests?",
    "I'd love a custom video, what do you charge?",
]
BUYER_TALK = [
    "anything new this week?",
    "loved the last set, more please!",
    "got more like that one?",
    "when is the next drop?",
    "that video was 🔥",
]
ITEMS = [("Photo set", 15), ("Video", 25), ("Bundle", 45), ("Voice note", 10),
         ("PPV message", 12)]  # fmt: skip
TIPS = [5, 5, 10, 10, 20, 50, 100]
CUSTOMS = [80, 120, 150]


@dataclass
class Fan:
    fan_id: str
    name: str
    username: str
    country: str | None
    subscribed_at: datetime
    total_spent: Decimal = Decimal(0)
    message_count: int = 0
    tags: list[str] = field(default_factory=list)
    big_spender: bool = False

    def fields(self) -> dict:
        fields = {
            "name": self.name.split()[0],
            "username": self.username,
            "subscribed_at": iso(self.subscribed_at),
            "total_spent": float(self.total_spent),
            "message_count": self.message_count,
        }
        if self.tags:
            fields["tags"] = list(self.tags)
        if self.country:
            fields["country"] = self.country
        return fields


@dataclass(order=True)
class Planned:
    """An event to happen; its fan's fields are read when it happens, in time order."""

    at: datetime
    order: int
    kind: str = field(compare=False)
    fan: Fan = field(compare=False)
    event: dict = field(compare=False, default_factory=dict)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def username(rng: random.Random, name: str) -> str:
    first, last = name.lower().split()[0], name.lower().split()[-1]
    return f"{first}{last[0]}_{rng.randint(70, 99)}".replace("é", "e").replace("è", "e")


class Week:
    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.planned: list[Planned] = []
        self.fans: list[Fan] = []

    def moment(self, start: datetime, end: datetime) -> datetime:
        """A time between start and end, mostly in the fan's waking hours."""
        for _ in range(20):
            seconds = self.rng.uniform(0, (end - start).total_seconds())
            moment = (start + timedelta(seconds=seconds)).replace(microsecond=0)
            if moment.hour >= 8 or self.rng.random() < 0.15:
                return moment
        return moment

    def plan(self, at: datetime, kind: str, fan: Fan, event: dict | None = None) -> None:
        if WEEK_START <= at < WEEK_START + WEEK:
            self.planned.append(Planned(at, len(self.planned), kind, fan, event or {}))

    def new_fan(self, subscribed_at: datetime, **kwargs) -> Fan:
        name = NAMES[len(self.fans)]
        country = self.rng.choice(COUNTRIES) if self.rng.random() < 0.9 else None
        fan = Fan(f"fan_{1001 + len(self.fans)}", name, username(self.rng, name), country,
                  subscribed_at, **kwargs)  # fmt: skip
        self.fans.append(fan)
        return fan

    # --- Who the creator's fans are ----------------------------------------------------

    def existing_fans(self, count: int) -> None:
        for i in range(count):
            # One fan in three turned renewal off and their month ends around this week.
            expiring = i % 3 == 0
            days_ago = self.rng.uniform(21, 28) if expiring else self.rng.uniform(5, 20)
            subscribed = WEEK_START - timedelta(days=days_ago, hours=i)
            spent = Decimal(self.rng.choice([0, 0, 0, 9, 15, 25, 40, 60, 95, 140, 210]))
            fan = self.new_fan(subscribed.replace(microsecond=0), total_spent=spent,
                               message_count=self.rng.choice([0, 0, 2, 5, 11, 23]))  # fmt: skip
            if spent:
                fan.tags.append("buyer")  # tagged by the creator's automations last month
            if i in (3, 17):
                fan.tags.append("no_promos")
            if i == 8:
                fan.tags.append("no_reminders")
            if i in (1, 6, 13):
                fan.total_spent = Decimal(self.rng.choice([380, 420, 455]))
                fan.big_spender = True
            self.activity(fan, WEEK_START)
            if expiring:
                self.expiry_notices(fan)

    def new_subscribers(self, count: int) -> None:
        for i in range(count):
            at = self.moment(WEEK_START, WEEK_START + WEEK - timedelta(hours=6))
            fan = self.new_fan(at)
            if i in (4, 11):  # a VIP from an earlier subscription comes back
                fan.total_spent = Decimal(self.rng.choice([540, 610]))
                fan.tags = ["buyer", "vip"]
            fan.big_spender = i == 7
            self.plan(at, "new_subscriber", fan)
            self.activity(fan, at)

    # --- What they do during the week ----------------------------------------------------

    def activity(self, fan: Fan, since: datetime) -> None:
        end = WEEK_START + WEEK
        for _ in range(self.rng.choice([0, 1, 2, 3, 3, 4, 5, 7])):
            at = self.moment(since + timedelta(minutes=5), end)
            pool = self.rng.choice([SMALL_TALK, SMALL_TALK, QUESTIONS, BUYER_TALK])
            self.plan(at, "message_received", fan, {"text": self.rng.choice(pool)})
        purchases = self.rng.choice([0, 1, 1, 2, 2, 3]) + (4 if fan.big_spender else 0)
        for _ in range(purchases):
            at = self.moment(since + timedelta(minutes=20), end)
            self.plan(at, "purchase_completed", fan, self.purchase(fan))

    def purchase(self, fan: Fan) -> dict:
        roll = self.rng.random()
        if fan.big_spender and roll < 0.6:
            item, amount = "Custom video", self.rng.choice(CUSTOMS)
        elif roll < 0.25:
            item, amount = "Tip", self.rng.choice(TIPS)
        else:
            item, amount = self.rng.choice(ITEMS)
        return {"amount": amount, "item": item}

    def expiry_notices(self, fan: Fan) -> None:
        """The platform's notices for a subscription that will not renew by itself."""
        ends = fan.subscribed_at + SUBSCRIPTION
        for days_left in (7, 3, 1):
            at = (ends - timedelta(days=days_left)).replace(minute=0, second=0)
            event = {"days_left": days_left, "renewal_price": RENEWAL_PRICE}
            self.plan(at, "subscription_expiring", fan, event)

    # --- Playing it out ------------------------------------------------------------------

    def events(self) -> list[dict]:
        rows = []
        for number, planned in enumerate(sorted(self.planned), start=1):
            fan = planned.fan
            if planned.kind == "message_received":
                fan.message_count += 1
            elif planned.kind == "purchase_completed":
                fan.total_spent += Decimal(planned.event["amount"])
            data = {"fan": fan.fields()}
            if planned.kind != "new_subscriber":
                data["event"] = dict(planned.event)
            rows.append({"id": f"evt_{number:05d}", "type": planned.kind, "fan_id": fan.fan_id,
                         "timestamp": iso(planned.at), "data": data})  # fmt: skip
        return rows


def generate(seed: int = SEED) -> str:
    week = Week(seed)
    week.existing_fans(28)
    week.new_subscribers(18)
    lines = [json.dumps(row, ensure_ascii=False) for row in week.events()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        same = OUTPUT.exists() and OUTPUT.read_text(encoding="utf-8") == text
        print(f"{OUTPUT.name} is {'up to date' if same else 'out of date'}")
        return 0 if same else 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} events to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
