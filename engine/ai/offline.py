"""English → automation text without a model: the offline provider of the AI builder.

With no LLM configured, the builder still answers: this module reads the common ways
creators describe an automation ("when someone subscribes, welcome them by name, and if
they haven't bought anything after 3 days send them 15% off for 2 days") with a small
table of regular expressions, one row per concept, and writes the automation as a syntax
tree that the formatter prints. Whatever it produces passes the checker: a step the
installed plugins refuse is left out rather than kept broken, and the parts of the request
it could not map are listed in :attr:`Understanding.unrecognised`, so the builder can say
what is missing instead of pretending.

How a request is read:

1. Quoted text ("..." or '...') is set aside, so that a message or a tag is kept verbatim
   and the rules below never look inside it.
2. The request is cut into clauses at punctuation, "and" and "then".
3. The rules of :data:`RULES_BEFORE_TRIGGER`, then of :data:`RULES_AFTER_TRIGGER`, run
   in order over each clause; a rule that matches yields
   items (a wait, a condition, a discount, a message, a tag...) and blanks out the words
   it used, so that a later rule does not read them again. The trigger is chosen between
   the two rule phases, from the first words that name one.
4. The clauses become steps: in a clause, waits first, then a condition written before
   the actions opens an `if` that lasts until "otherwise" or the end (a condition after
   the actions covers only that clause), then the actions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from dsl import ast
from dsl.catalog import Catalog, TriggerSpec, ValueType
from dsl.formatter import expression, format_module
from dsl.pipeline import analyse
from dsl.types import accepted_types

__all__ = ["Understanding", "fallback_template", "translate", "understand"]

DEFAULT_NAME = "New automation"
DEFAULT_VALIDITY = ast.Duration(48, "h")  # an offer the request gave no duration for
MAX_NAME = 80
MAX_DESCRIPTION = 300


@dataclass(frozen=True)
class Understanding:
    """What a request asks for, as far as the offline rules recognise it.

    ``actions`` are catalogue action names in the order the automation runs them;
    ``durations``, ``percentages`` and ``amounts`` are the values written in the request,
    in the language's notation (``3d``, ``15%``, ``$100``); ``tags`` the tags it adds,
    removes or tests; ``keywords`` the words a message is tested for; ``unrecognised``
    the clauses of the request that no rule could map.
    """

    trigger: str | None
    actions: tuple[str, ...] = ()
    durations: tuple[str, ...] = ()
    percentages: tuple[str, ...] = ()
    amounts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    unrecognised: tuple[str, ...] = ()


def understand(description: str, catalog: Catalog) -> Understanding:
    """What ``description`` asks for, recognised by the offline rules."""
    return _read(description, catalog).understanding


def translate(description: str, catalog: Catalog) -> str:
    """The text of one automation doing what ``description`` asks, as far as understood.

    Always checks without errors against ``catalog`` (an empty text if the catalogue has
    no trigger at all, since no automation can be written then).
    """
    plan = _read(description, catalog)
    automation = ast.Automation(
        plan.name, ast.Trigger(plan.trigger or "", plan.trigger_args), (), plan.description
    )
    return _Fitter(catalog).fit(automation, plan.body) or fallback_template(
        plan.trigger, catalog, plan.name
    )


def fallback_template(trigger: str | None, catalog: Catalog, name: str) -> str:
    """The design's fallback: a valid automation for ``trigger`` with the basic structure,
    a message to write, for the creator to finish. An unknown or missing trigger falls back
    to the default one; required trigger arguments get a placeholder value of their type.
    """
    chosen = trigger if trigger in catalog.triggers else _default_trigger(catalog)
    if chosen is None:
        return ""
    spec = catalog.triggers[chosen]
    head = ast.Automation(
        _clean_name(name),
        ast.Trigger(chosen, _placeholder_arguments(spec)),
        (),
        "Write what this automation should do, then check it",
    )
    body: tuple[ast.Step, ...] = ()
    if "send_message" in catalog.actions:
        hello = "Hi {{ fan.name }}! " if "fan.name" in spec.fields else "Hi! "
        body = (_send(hello + "(Write your message here.)"),)
    text = _Fitter(catalog).fit(head, body)
    return text or _render(replace(head, trigger=ast.Trigger(chosen), description=None))


# --- Values -------------------------------------------------------------------------------

_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "couple of": 2, "a couple of": 2, "three": 3,
    "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_NUM = r"(?:\d{1,4}|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + ")"
# Unit words → (language unit, multiplier); one-letter units only straight after digits.
_UNITS = {
    "second": ("s", 1), "sec": ("s", 1), "minute": ("m", 1), "min": ("m", 1),
    "hour": ("h", 1), "hr": ("h", 1), "day": ("d", 1), "week": ("w", 1), "wk": ("w", 1),
    "month": ("d", 30),
}  # fmt: skip
_DURATION = (
    r"(?:(?P<dn>\d{1,4})(?P<du>[smhdw])\b|(?P<wn>"
    + _NUM
    + r")(?:\s+(?:more|extra|whole|full))?[\s-]*"
    r"(?P<wu>seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|wks?|months?)\b)"
)
_MONEY = (
    r"(?:(?P<cur>[$€£])\s?(?P<amt>\d{1,6}(?:\.\d{1,2})?)"
    r"|(?P<amt2>\d{1,6}(?:\.\d{1,2})?)\s*(?P<word>\$|dollars?\b|bucks\b|usd\b|euros?\b|eur\b"
    r"|pounds?\b|gbp\b))"
)
_PERCENT = r"(?P<pct>\d{1,3}(?:\.\d{1,2})?|" + _NUM + r")\s*(?:%|percent\b|per cent\b|pct\b)"
_CURRENCIES = {"$": "USD", "€": "EUR", "£": "GBP", "dollar": "USD", "dollars": "USD",
               "bucks": "USD", "usd": "USD", "euro": "EUR", "euros": "EUR", "eur": "EUR",
               "pound": "GBP", "pounds": "GBP", "gbp": "GBP"}  # fmt: skip
# "double", “curly” or 'single' quotes; an apostrophe inside a word ("I'll") is not one.
_QUOTE = re.compile(
    '"([^"\n]*)"|\u201c([^\u201d\n]*)\u201d'
    "|(?<!\\w)['\u2018]((?:[^'\u2019\n]|['\u2019](?=\\w))+?)['\u2019](?!\\w)"
)
_TOKEN = r"⟦\d+⟧"  # a quoted text set aside
_TAG = rf"(?P<tag>{_TOKEN}|[a-z0-9_][a-z0-9_-]*)"


def _number(word: str) -> int:
    word = " ".join(word.split())
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


def _duration(m: re.Match) -> ast.Duration | None:
    if m.group("dn"):
        amount, unit = int(m.group("dn")), m.group("du")
    else:
        base = m.group("wu").rstrip("s") or "s"
        unit, factor = _UNITS[base]
        amount = _number(m.group("wn")) * factor
    return ast.Duration(amount, unit) if amount > 0 else None


def _money(m: re.Match) -> ast.Money:
    if m.group("cur"):
        return ast.Money(Decimal(m.group("amt")), _CURRENCIES[m.group("cur")])
    return ast.Money(Decimal(m.group("amt2")), _CURRENCIES.get(m.group("word"), "USD"))


def _percent(m: re.Match) -> ast.Percent | None:
    text = m.group("pct")
    value = Decimal(text) if text[0].isdigit() else Decimal(_number(text))
    return ast.Percent(value) if value > 0 else None


def _words(duration: ast.Duration) -> str:
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}[duration.unit]
    return f"{duration.amount} {unit}{'' if duration.amount == 1 else 's'}"


# --- Items: what the rules find in a clause -------------------------------------------------


@dataclass
class _Item:
    """One thing a rule found, at a position in its clause. ``kind``: trigger, trigger_arg,
    wait, validity, discount, condition, if, unless, else, message, add_tag, remove_tag,
    offer_word; and amount, tag, keyword, which only record a value the request names."""

    kind: str
    pos: int
    value: Any = None
    extra: dict = field(default_factory=dict)


@dataclass
class _Clause:
    raw: str  # as written, quotes replaced by ⟦n⟧ tokens
    text: str  # ``raw`` in lower case, the same length
    masked: str  # ``text`` with the words rules have used blanked out
    items: list[_Item] = field(default_factory=list)

    def mask(self, start: int, end: int) -> None:
        self.masked = self.masked[:start] + " " * (end - start) + self.masked[end:]


@dataclass
class _Context:
    catalog: Catalog
    quotes: list[str]
    original: str
    trigger: str | None = None

    @property
    def fields(self) -> Mapping[str, ValueType]:
        spec = self.catalog.triggers.get(self.trigger or "")
        return spec.fields if spec else {}

    def quoted(self, token: str) -> str:
        """A tag value or keyword: the quoted text itself, or the word as written."""
        found = re.fullmatch(r"⟦(\d+)⟧", token)
        return self.quotes[int(found.group(1))] if found else token


# A handler receives the match, its clause and the context; it returns the items found
# (the matched words are then blanked out), or None when the match does not apply here.
Handler = Callable[[re.Match, _Clause, _Context], "list[_Item] | None"]


@dataclass(frozen=True)
class Rule:
    concept: str
    pattern: re.Pattern
    handler: Handler
    # Named groups to blank out instead of the whole match (the words between stay).
    mask_groups: tuple[str, ...] = ()


def _compare(op: str, left: str, right: ast.Expr) -> ast.Compare:
    return ast.Compare(op, ast.Field(tuple(left.split("."))), right)


def _condition(expr: ast.Expr, pos: int) -> list[_Item]:
    return [_Item("condition", pos, expr)]


# --- The rules ------------------------------------------------------------------------------

_PRONOUN = r"(?:them|him|her|the fan|that fan|fans|everyone|every fan|each fan|the person)"
_NOT_A_TAG = frozenset(
    re.findall(
        r"\S+",
        """them him her the a an as with tag tags fan fans it everyone and or to from of for on
        yet again too before already who that when if whose they someone somebody everybody
        people this these those me my you in at by after later then now back soon""",
    )
)


def _tag_value(m: re.Match, ctx: _Context) -> str | None:
    value = ctx.quoted(m.group("tag")).strip()
    quoted = m.group("tag").startswith("⟦")
    if not value or len(value) > 64 or (not quoted and (value in _NOT_A_TAG or value.isdigit())):
        return None
    return value


def _tag_condition(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    tag = _tag_value(m, ctx)
    if tag is None:
        return None
    op = "not in" if m.group("neg") else "in"
    test = ast.Compare(op, ast.String(tag), ast.Field(("fan", "tags")))
    return [_Item("condition", m.start(), test), _Item("tag", m.start(), tag)]


def _tag_action(kind: str, named: bool = False) -> Handler:
    """``named``: the match must say "tag" ("add the vip tag"), not just "add vip"."""

    def handler(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
        if named and not (m.group("pre") or m.group("post")):
            return None
        tag = _tag_value(m, ctx)
        return None if tag is None else [_Item(kind, m.start(), tag)]

    return handler


def _vip(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    op = "not in" if m.group("neg") else "in"
    test = ast.Compare(op, ast.String("vip"), ast.Field(("fan", "tags")))
    return [_Item("condition", m.start(), test), _Item("tag", m.start(), "vip")]


def _not_bought(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    return _condition(_compare("==", "fan.total_spent", ast.Money(Decimal(0))), m.start())


def _days_before(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    spec = ctx.catalog.triggers.get(ctx.trigger or "")
    config = spec.config_model if spec else None
    if config is None or "days_before" not in config.model_fields:
        return None
    before = clause.text[max(0, m.start() - 30) : m.start()]
    if re.search(r"\b(?:offer|code|coupon|discount|deal|promo|off|that|which|it)\s+$", before):
        return None  # "a code that expires in 3 days": the offer's, not the subscription's
    groups = m.groupdict()
    if groups.get("when"):
        days = {"today": 0, "tomorrow": 1, "next week": 7, "in a week": 7}[groups["when"]]
    else:
        days = _number(groups["n"]) * (7 if groups["unit"].startswith("week") else 1)
    return [_Item("trigger_arg", m.start(), ("days_before", ast.Number(Decimal(days))))]


def _trigger_words(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    items = [_Item("trigger", m.start())]
    if m.groupdict().get("tip") and "event.item" in ctx.fields:
        items += _condition(_compare("==", "event.item", ast.String("Tip")), m.start())
    return items


def _else(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    return [_Item("else", m.start())]


def _amount_condition(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    op = {"more than": ">", "over": ">", "above": ">", "greater than": ">", "at least": ">=",
          "less than": "<", "under": "<", "below": "<", "at most": "<=", "more then": ">",
          "less then": "<", ">": ">", "<": "<", ">=": ">=", "<=": "<=", "+": ">=",
          "or more": ">=", "or less": "<="}[" ".join(m.group("cmp").split())]  # fmt: skip
    before, after = clause.text[max(0, m.start() - 40) : m.start()], clause.text[m.end() :]
    event_amount = "event.amount" in ctx.fields
    if event_amount and re.match(r"\s*(?:in (?:one|a single)|per|at once|for one|each)", after):
        path = "event.amount"
    elif re.search(r"\b(?:spent|spend|spends|spending|total|lifetime|so far)\b", before + after):
        path = "fan.total_spent"
    else:
        path = "event.amount" if event_amount else "fan.total_spent"
    return [
        *_condition(_compare(op, path, _money(m)), m.start()),
        _Item("amount", m.start(), _money(m)),
    ]


_COUNTRIES = {
    "us": "US", "usa": "US", "u.s.": "US", "united states": "US", "america": "US",
    "uk": "GB", "u.k.": "GB", "united kingdom": "GB", "britain": "GB", "great britain": "GB",
    "england": "GB", "canada": "CA", "france": "FR", "germany": "DE", "spain": "ES",
    "italy": "IT", "mexico": "MX", "brazil": "BR", "australia": "AU", "japan": "JP",
    "ireland": "IE", "netherlands": "NL", "belgium": "BE", "switzerland": "CH",
    "india": "IN", "argentina": "AR", "colombia": "CO", "sweden": "SE",
}  # fmt: skip


_COUNTRY = "(?:" + "|".join(re.escape(c) for c in sorted(_COUNTRIES, key=len, reverse=True)) + ")"


def _country(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    named = re.findall(rf"(?<![\w.]){_COUNTRY}(?![\w.])", m.group("country"))
    creator = named == ["us"] and not m.group("the")
    if creator and not re.search(r"\bUS\b", ctx.original):
        return None  # "from us" is the creator, not the United States
    codes = list(dict.fromkeys(_COUNTRIES[c] for c in named))
    negated = bool(m.group("neg"))
    if len(codes) == 1:
        test = _compare("!=" if negated else "==", "fan.country", ast.String(codes[0]))
    else:
        countries = ast.ListExpr(tuple(ast.String(c) for c in codes))
        test = _compare("not in" if negated else "in", "fan.country", countries)
    return _condition(test, m.start())


def _keyword(word: str, ctx: _Context) -> str:
    """A quoted keyword as written; a plain word in the singular ("prices" → "price"),
    which `in` also finds in the plural."""
    if word.startswith("⟦"):
        return ctx.quoted(word).strip()
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _keywords(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    if "event.text" not in ctx.fields:
        return None
    before = clause.text[: m.start()]
    verb = r"\b(?:reply|respond|answer|send|say|saying|text|dm|write)"
    if re.search(verb + r"\s*$", before) or (
        m.group(0).startswith("with") and re.search(verb, before)
    ):
        return None  # "reply with '...'" is the message, not what the fan wrote
    words = [_keyword(w, ctx) for w in re.findall(rf"{_TOKEN}|[a-z0-9']+", m.group("kw"))]
    words = [w for w in words if w and w not in _NOT_A_TAG]
    if not words:
        return None
    expr: ast.Expr | None = None
    for word in words:
        test = ast.Compare("in", ast.String(word), ast.Field(("event", "text")))
        expr = test if expr is None else ast.BoolOp("or", expr, test)
    return [_Item("condition", m.start(), expr), *(_Item("keyword", m.start(), w) for w in words)]


def _said(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    """ "a fan sends a message saying thank you": what the fan wrote, as one keyword; not
    "send them a message saying ...", which is the creator's."""
    if "event.text" not in ctx.fields:
        return None
    if re.search(r"\b(?:send|sending|shoot|drop|get|gets)\b", clause.text[: m.start()]):
        return None
    said = m.group("kw").strip()
    test = ast.Compare("in", ast.String(said), ast.Field(("event", "text")))
    return [_Item("condition", m.start(), test), _Item("keyword", m.start(), said)]


def _first_message(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    if "fan.message_count" not in ctx.fields or ctx.trigger != "message_received":
        return None
    return _condition(_compare("==", "fan.message_count", ast.Number(Decimal(1))), m.start())


def _tip(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    if "event.item" not in ctx.fields:
        return None
    return _condition(_compare("==", "event.item", ast.String("Tip")), m.start())


def _if_word(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    return [_Item(m.group(1), m.start())]  # "if" or "unless"


def _timed(kind: str) -> Handler:
    def handler(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
        duration = _duration(m)
        return None if duration is None else [_Item(kind, m.start(), duration)]

    return handler


_OFFER_WORDS = re.compile(rf"{_PERCENT}|{_MONEY}\s*off|half[- ]off|discount|offer|coupon")


def _bare_duration(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    """A duration with no word saying what it is for ("a 7 day 20% discount"): the offer's
    validity if the clause makes an offer, otherwise not understood."""
    duration = _duration(m)
    if duration is None or not _OFFER_WORDS.search(clause.text):
        return None
    return [_Item("validity", m.start(), duration)]


def _discount_percent(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    value = _percent(m)
    return None if value is None else [_Item("discount", m.start(), value)]


def _discount_money(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    value = _money(m)
    return None if value.amount <= 0 else [_Item("discount", m.start(), value)]


def _offer_word(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    return [_Item("offer_word", m.start())]


# Message intents, tried in order on the clause's text: the first that matches says what
# kind of message the creator asked for.
_INTENTS: tuple[tuple[str, str], ...] = (
    ("welcome_back", r"welcome (?:them |him |her )?back"),
    ("announce", r"tell (?:them|him|her) about|let (?:them|him|her) know|about it\b|announc"),
    ("remind", r"remind|renew"),
    ("thank", r"\bthank|\bthanks|\bthx|\bty\b|grateful|appreciat"),
    ("welcome", r"welcom|greet"),
    (
        "ask",
        r"\bask|check[- ]?in|feedback|enjoy|liking|liked? it|(?:like|want) to see|how (?:they|it)",
    ),
    ("hello", r"\b(?:hi|hello|hey)\b"),
    ("reply", r"\b(?:reply|respond|answer)"),
)


def _message(m: re.Match, clause: _Clause, ctx: _Context) -> list[_Item] | None:
    if "send_message" not in ctx.catalog.actions:
        return None
    extra: dict[str, Any] = {}
    # "saying hello from Toronto": the words themselves, when there are a few of them.
    saying = re.search(r"\b(?:saying|that says|to say)\s+(?P<what>[^⟦]+?)\s*$", clause.text)
    if saying and len(saying.group("what").split()) > 2:
        extra["saying"] = clause.raw[saying.start("what") : saying.end("what")]
        clause.mask(saying.start(), saying.end())
    intent = next((name for name, pat in _INTENTS if re.search(pat, clause.text)), "generic")
    by_name = re.search(r"\b(?:by (?:their |his |her )?names?|their name|personal)", clause.text)
    extra["by_name"] = bool(by_name)
    return [_Item("message", m.start(), intent, extra)]


_SEND_VERB = r"(?:send|sending|shoot|drop|dm|message|text)"
_MESSAGE_NOUN = (
    r"(?:message|msg|dm|note|text|reminder|thank[- ]?you|thanks|welcome|greeting|menu|hello"
    r"|reply|shout-?out|renewal price|price|link|details|info)"
)

RULES_BEFORE_TRIGGER: tuple[Rule, ...] = (
    # Tags first: a tag's name ("redeemed", "subscriber") must not be read as anything else.
    Rule(
        "add tag",
        re.compile(
            rf"\b(?:gets?|getting|should get|will get|should be|will be)\s+tagged\s+"
            rf"(?:as\s+|with\s+)?(?:the\s+)?{_TAG}"
        ),
        _tag_action("add_tag"),
    ),
    Rule(
        "tag condition",
        re.compile(
            rf"(?:(?P<neg>\bnot|n't|\bnever|\bno longer)\s+(?:been\s+|yet\s+)?)?\btagged\s+"
            rf"(?:as\s+|with\s+)?(?:the\s+)?{_TAG}"
        ),
        _tag_condition,
    ),
    Rule(
        "tag condition",
        re.compile(rf"\b(?:has|have|with|got)\s+(?P<neg>no\s+)?(?:the\s+|a\s+)?{_TAG}\s+tag\b"),
        _tag_condition,
    ),
    Rule(
        "add tag",
        re.compile(
            rf"\b(?P<verb>tag|label|mark)\b(?:\s+[^\s,]+){{1,6}}?\s+(?:as|with)\s+(?:the\s+)?{_TAG}"
        ),
        _tag_action("add_tag"),
        mask_groups=("verb", "tag"),
    ),
    Rule(
        "add tag",
        re.compile(
            rf"\b(?P<verb>tag|label|mark)\s+(?:{_PRONOUN}\s+)?(?:as\s+|with\s+)?(?:the\s+|a\s+)?"
            rf"{_TAG}(?!\s+(?:who|that|when|if|whose|from|as|with)\b)(?:\s+tag\b)?"
        ),
        _tag_action("add_tag"),
    ),
    Rule(
        "add tag",
        re.compile(
            rf"\b(?:add|give|put|apply)\s+(?:{_PRONOUN}\s+)?(?:to\s+)?(?:the\s+|a\s+)?(?P<pre>tag\s+)?"
            rf"{_TAG}(?P<post>\s+tag\b)?"
        ),
        _tag_action("add_tag", named=True),
    ),
    Rule(
        "remove tag",
        re.compile(
            rf"\b(?:remove|drop|delete|take off|take away|clear)\s+(?:the\s+|their\s+)?"
            rf"(?:tag\s+)?{_TAG}(?:\s+tag\b)?(?:\s+from\s+{_PRONOUN})?"
        ),
        _tag_action("remove_tag"),
    ),
    Rule(
        "remove tag",  # "remove the tag after 3 days": the tag the request added
        re.compile(
            r"\b(?:remove|drop|delete|take off|take away|clear)\s+(?:the|that|this|their)\s+tag"
            r"\b(?!\s+(?:⟦|[a-z0-9_-]+\s+tag\b))|\buntag\s+them\b(?!\s+(?:as\s+)?[⟦a-z0-9_])"
        ),
        lambda m, c, x: [_Item("remove_tag", m.start(), None)],
    ),
    Rule(
        "remove tag",
        re.compile(rf"\buntag\s+(?:{_PRONOUN}\s+)?(?:as\s+)?{_TAG}"),
        _tag_action("remove_tag"),
    ),
    # "VIPs" are the fans tagged vip.
    Rule(
        "vip",
        re.compile(r"(?P<neg>\bnot\s+(?:a\s+|an\s+|one of my\s+)?|\bnon-?)?\bvips?\b(?:\s+fans?)?"),
        _vip,
    ),
    # "haven't bought" is a condition, never the purchase trigger.
    Rule(
        "has not bought",
        re.compile(
            r"(?:\bhave not|\bhas not|\bhaven'?t|\bhasn'?t|\bdidn'?t|\bdid not|\bnever|\bnot yet"
            r"|\bnot|\bno)\s+(?:yet\s+|ever\s+|even\s+)?(?:bought|buy|purchased|purchase|purchases"
            r"|spent|spend|paid|unlocked|made a purchase)"
            r"(?:\s+(?:anything|something|a thing|any|yet|a dime|a cent|money))*"
        ),
        _not_bought,
    ),
    Rule("has not bought", re.compile(r"\bnon-?buyers?\b|\bnever bought\b"), _not_bought),
)

# Trigger words, by trigger; the earliest in the request wins. Weak words count only if no
# trigger is named otherwise.
_TRIGGER_WORDS: dict[str, tuple[str, ...]] = {
    "offer_redeemed": (
        r"\bredeem\w*(?:\s+(?:an?|the|my|their|your)\s+(?:offer|code|coupon|discount|promo)s?)?",
        r"\b(?:uses?|used|claims?|claimed)\s+(?:an?|the|my|their|your)\s+(?:discount\s+|promo\s+)?"
        r"(?:offer|code|coupon|discount|promo)s?\b",
    ),
    "subscription_expiring": (
        r"\b(?:sub|subs|subscription|subscriptions|membership)\b(?:'s)?\s+(?:[\w']+\s+){0,3}?"
        r"(?:expir\w*|ends?\b|ending|runs? out|run out|renews?\b|renewal|lapses?|is up)",
        r"\b(?:about to|going to|gonna|will soon|soon to)\s+(?:expire|end|run out|lapse)",
        r"\b(?:expiring|expiry)\b",
        r"\bbefore (?:the |their |a fan's |his |her )?(?:sub|subscription)",
    ),
    "message_received": (
        r"\bmessages?\s+(?:is\s+)?received\b",
        r"\b(?:fans?|someone|somebody|anyone|they|people|user|he|she|who)\s+(?:sends?|sent)\s+"
        r"(?:me\s+|you\s+|us\s+)?(?:a\s+|an\s+|any\s+)?(?:message|dm|text|msg)",
        r"\b(?:fans?|someone|somebody|anyone|they|people|user|he|she|who)\s+(?:messages|messaged"
        r"|dms|dm's|dm|texts|texted|writes|wrote|replies|says|said|asks|asked|messaging)\b",
        r"\b(?:every|each|any|incoming|new)\s+(?:message|dm|msg)s?\b",
        r"\bin (?:a|their|the|his|her) (?:message|dm)\b",
        r"\b(?:a|the|any) (?:message|dm|msg)s? (?:contains|containing|with|that|mentions)\b",
    ),
    "purchase_completed": (
        r"\b(?P<tip>tip(?:s|ped|ping|per|pers)?)\b",
        r"\bbu(?:y|ys|ying)\b|\bbought\b|\bpurch\w*|\bunlock(?:s|ed)?\b|\bpays?\b|\bpaid\b"
        r"|\borders?\b|\bbuyers?\b",
    ),
    "new_subscriber": (
        r"\bsu?bs?c?ri?b(?:e|es|ed|er|ers|ing|s)\b",
        r"\bnew\s+(?:subs?|fans?|followers?|members?)\b",
        r"\bjoin(?:s|ed|ing)?\b|\bsign(?:s|ed)?\s+up\b|\bsubb(?:ed|ing)\b",
    ),
}
_WEAK_TRIGGER_WORDS: dict[str, str] = {
    "new_subscriber": r"\bwelcom",
    "subscription_expiring": r"\brenew\w*|\bexpir\w*",
    "message_received": r"\b(?:reply|replies|respond|messages?|dms?)\b",
    "purchase_completed": r"\bpurchase|\bsales?\b|\bspen(?:d|ds|t|ding)\b",
}


def _trigger_pattern(name: str) -> re.Pattern:
    words = _TRIGGER_WORDS.get(name)
    if words is None:  # a plugin's trigger: its name, with spaces or underscores
        spoken = re.escape(name).replace("_", r"[\s_]")
        return re.compile(rf"\b{spoken}\b")
    return re.compile("|".join(f"(?:{w})" for w in words))


RULES_AFTER_TRIGGER: tuple[Rule, ...] = (
    Rule(
        "days before",
        re.compile(
            rf"\b(?P<n>{_NUM})\s+(?P<unit>days?|weeks?)\s+(?:before|prior to|ahead of|ahead)\b"
        ),
        _days_before,
    ),
    Rule(
        "days before",
        re.compile(
            rf"\b(?:expir\w*|ends?|ending|runs? out|renews?|lapses?|is up)\s+(?:in\s+)?"
            rf"(?P<n>{_NUM})\s+(?P<unit>days?|weeks?)\b"
        ),
        _days_before,
    ),
    Rule(
        "days before",
        re.compile(
            r"\b(?:expir\w*|ends?|ending|runs? out|renews?|lapses?|is up)\s+"
            r"(?P<when>today|tomorrow|next week|in a week)\b"
        ),
        _days_before,
    ),
    Rule(
        "keywords",
        re.compile(
            rf"\b(?:contains?|containing|includes?|including|says|said|mentions?|mentioning|writes"
            rf"|types|dms|dm's|messages|messaged|texts|with|keyword|word|about)\s+(?:me\s+)?"
            rf"(?:the\s+(?:word|keyword)s?\s+)?(?P<kw>{_TOKEN}(?:\s*(?:,|or|and)\s*{_TOKEN})*)"
        ),
        _keywords,
    ),
    Rule(
        "keywords",
        re.compile(
            r"\b(?:says|said|writes|types|the word|keyword|asks about|asking about|mentions)\s+"
            r"(?P<kw>[a-z0-9']+)"
        ),
        _keywords,
    ),
    Rule(
        "keywords",
        re.compile(
            r"\b(?:message|dm|msg|text)\s+(?:saying|that says)\s+(?P<kw>[a-z0-9' ]{1,30}?)\s*$"
        ),
        _said,
    ),
    Rule("trigger", re.compile(""), _trigger_words),  # replaced by the chosen trigger's words
    Rule(
        "otherwise",
        re.compile(r"\b(?:otherwise|else|if not|for everyone else|for the rest)\b"),
        _else,
    ),
    Rule(
        "amount condition",
        re.compile(
            rf"(?P<cmp>more th[ae]n|over|above|greater than|at least|less th[ae]n|under|below"
            rf"|at most|>=|<=|>|<)\s*{_MONEY}"
        ),
        _amount_condition,
    ),
    Rule(
        "amount condition",
        re.compile(rf"{_MONEY}\s*(?P<cmp>\+|or more|or less)"),
        _amount_condition,
    ),
    Rule(
        "country",
        re.compile(
            rf"\b(?:(?P<neg>not\s+)?(?:from|in|living in|based in|located in)\s+)(?P<the>the\s+)?"
            rf"(?P<country>{_COUNTRY}(?:(?:\s*,\s*|\s+or\s+|\s*/\s*)(?:the\s+)?{_COUNTRY})*)"
            r"(?![\w.])"
        ),
        _country,
    ),
    Rule(
        "first message",
        re.compile(r"\bfirst (?:message|dm|msg|time (?:they )?message)"),
        _first_message,
    ),
    Rule("tip", re.compile(r"\btip(?:s|ped|ping|per|pers)?\b"), _tip),
    Rule("if", re.compile(r"^\s*(?:and\s+|but\s+|so\s+)?(?:only\s+)?(if|unless)\b"), _if_word),
    Rule(
        "validity",
        re.compile(
            rf"(?<!wait )(?<!waits )\b(?:for|valid|valid for|lasts?|lasting|good for|expires? in"
            rf"|expiring in|within|only|available for)\s+(?:the\s+next\s+|the\s+|up to\s+)?"
            rf"{_DURATION}"
        ),
        _timed("validity"),
    ),
    Rule(
        "wait",
        re.compile(
            rf"\b(?:wait|waits|waiting|after|then|in|about)\s+(?:for\s+|about\s+|like\s+|another\s+"
            rf"|the\s+)?{_DURATION}"
        ),
        _timed("wait"),
    ),
    Rule(
        "wait",
        re.compile(rf"{_DURATION}\s+(?:later|after(?:wards?)?|from now|on)\b"),
        _timed("wait"),
    ),
    Rule(
        "wait",
        re.compile(r"\b(?:a|the) day later\b|\bnext day\b"),
        lambda m, c, x: [_Item("wait", m.start(), ast.Duration(1, "d"))],
    ),
    Rule("discount", re.compile(_PERCENT), _discount_percent),
    Rule(
        "discount",
        re.compile(r"\bhalf[- ](?:off|price)\b"),
        lambda m, c, x: [_Item("discount", m.start(), ast.Percent(Decimal(50)))],
    ),
    Rule(
        "discount",
        re.compile(rf"{_MONEY}(?=\s*(?:off|discount|coupon|voucher|reduction))"),
        _discount_money,
    ),
    Rule("validity", re.compile(_DURATION), _bare_duration),
    Rule(
        "message",
        re.compile(
            rf"\b{_SEND_VERB}\s+(?:{_PRONOUN}\s+|back\s+|me\s+)?(?:a|an|my|the|their|some|this)?\s*"
            rf"(?:[a-z-]+\s+){{0,2}}?{_MESSAGE_NOUN}\b"
        ),
        _message,
    ),
    Rule(
        "message",
        re.compile(
            rf"\b(?:welcome|greet|thank|thanks|remind|reply|respond|answer|ask|tell|say|wish)\b"
            rf"|\b(?:message|dm|text)\s+(?:{_PRONOUN}|back)\b|\b{_SEND_VERB}\s+"
            rf"(?:{_PRONOUN}\s+)?(?=⟦)|\bget\s+(?:a|an)\s+(?:dm|message|text|note)\b"
        ),
        _message,
    ),
    Rule(
        "offer", re.compile(r"\b(?:discount|coupon|offer|promo|deal|code|voucher)s?\b"), _offer_word
    ),
)


# --- Reading a request -----------------------------------------------------------------------


@dataclass
class _Offer:
    discount: ast.Percent | ast.Money
    validity: ast.Duration | None = None

    def action(self) -> ast.Action:
        valid_for = self.validity or DEFAULT_VALIDITY
        return ast.Action(
            "create_offer",
            (ast.Argument("discount", self.discount), ast.Argument("valid_for", valid_for)),
        )


@dataclass
class _Plan:
    name: str
    description: str | None
    trigger: str | None
    trigger_args: tuple[ast.Argument, ...]
    body: tuple[ast.Step, ...]
    understanding: Understanding


_CLAUSE_BREAK = re.compile(
    r"[.;!?\n]+(?=\s|$)|,|\s-+>\s*|\s→\s*|\s+(?:and then|and|then|but|also|plus|&)\s+"
)
# Words that say nothing by themselves: a clause of only these is not reported as missed.
_FILLER = frozenset(
    re.findall(
        r"\S+",
        """a an the and then when whenever if so i i'm im my me we our you your it its is are
        be been to of for on in at with like just basically hey hi also please want wanna
        would need needs should can could automation that this these those they them their
        who someone somebody anyone fan fans people every each everyone one ok okay right
        away something anything all do does did make sure page account profile time there""",
    )
)


def _prepare(description: str) -> tuple[list[_Clause], list[str]]:
    quotes: list[str] = []

    def setaside(m: re.Match) -> str:
        quotes.append(next(g for g in m.groups() if g is not None))
        return f" ⟦{len(quotes) - 1}⟧ "

    raw = _QUOTE.sub(setaside, description).replace("\u2019", "'")
    text = raw.lower()
    if len(text) != len(raw):  # a few characters change length in lower case
        raw = text
    clauses, start = [], 0
    for end, after in [(m.start(), m.end()) for m in _CLAUSE_BREAK.finditer(text)] + [
        (len(text), len(text))
    ]:
        part = text[start:end]
        left = len(part) - len(part.lstrip())
        part = part.strip()
        if part:
            first = start + left
            clauses.append(_Clause(raw[first : first + len(part)], part, part))
        start = after
    return clauses, quotes


def _apply(rules: Iterable[Rule], clauses: list[_Clause], ctx: _Context) -> None:
    for rule in rules:
        for clause in clauses:
            for m in list(rule.pattern.finditer(clause.masked)):
                if not m.group(0).strip() or clause.masked[m.start() : m.end()].isspace():
                    continue
                if any(clause.masked[m.start(g) : m.end(g)].isspace() for g in rule.mask_groups
                       if m.start(g) >= 0):  # fmt: skip
                    continue
                found = rule.handler(m, clause, ctx)
                if found is None:
                    continue
                clause.items.extend(found)
                for start, end in [(m.start(g), m.end(g)) for g in rule.mask_groups] or [m.span()]:
                    if start >= 0:
                        clause.mask(start, end)


def _choose_trigger(clauses: list[_Clause], catalog: Catalog) -> str | None:
    best: tuple[int, int, int, str] | None = None
    for strength, table in ((0, _TRIGGER_WORDS), (1, _WEAK_TRIGGER_WORDS)):
        names = [*table, *(n for n in catalog.triggers if n not in _TRIGGER_WORDS)]
        for order, name in enumerate(names):
            if name not in catalog.triggers:
                continue
            pattern = _trigger_pattern(name) if strength == 0 else re.compile(table.get(name, "$^"))
            for index, clause in enumerate(clauses):
                m = pattern.search(clause.masked)
                if m:
                    candidate = (index, m.start(), order, name)
                    best = min(best, candidate) if best else candidate
                    break
        if best:
            return best[3]
    return None


def _default_trigger(catalog: Catalog) -> str | None:
    if "new_subscriber" in catalog.triggers:
        return "new_subscriber"
    return min(catalog.triggers, default=None)


def _read(description: str, catalog: Catalog) -> _Plan:
    clauses, quotes = _prepare(description)
    ctx = _Context(catalog, quotes, description)
    _apply(RULES_BEFORE_TRIGGER, clauses, ctx)
    recognised = _choose_trigger(clauses, catalog)
    # Without a trigger named, the rules still read conditions for the default one.
    ctx.trigger = recognised or _default_trigger(catalog)
    rules = list(RULES_AFTER_TRIGGER)
    if ctx.trigger is not None:
        rules = [
            replace(r, pattern=_trigger_pattern(ctx.trigger)) if r.concept == "trigger" else r
            for r in rules
        ]
    _apply((r for r in rules if r.concept != "trigger" or ctx.trigger), clauses, ctx)
    return _Builder(ctx, clauses, description).plan(recognised)


def _mentions(expr: ast.Expr) -> set[str]:
    match expr:
        case ast.Field():
            return {expr.dotted}
        case ast.Compare(left=left, right=right) | ast.BoolOp(left=left, right=right):
            return _mentions(left) | _mentions(right)
        case ast.Not(operand=operand):
            return _mentions(operand)
    return set()


def _and(conditions: list[ast.Expr]) -> ast.Expr:
    result = conditions[0]
    for condition in conditions[1:]:
        result = ast.BoolOp("and", result, condition)
    return result


@dataclass
class _Scope:
    """An `if` being filled: its condition, its steps, and its `else` steps once begun.
    A scope without a condition stands for one the rules could not read: nothing in it
    is written."""

    condition: ast.Expr | None
    body: list[ast.Step] = field(default_factory=list)
    else_body: list[ast.Step] | None = None

    @property
    def steps(self) -> list[ast.Step]:
        return self.body if self.else_body is None else self.else_body

    def node(self) -> ast.If | None:
        if self.condition is None or (not self.body and not self.else_body):
            return None
        if not self.body:  # "if X do nothing, otherwise Y": `if not X { Y }`
            return ast.If((ast.Branch(_negate(self.condition), tuple(self.else_body or ())),))
        branch = ast.Branch(self.condition, tuple(self.body))
        return ast.If((branch,), tuple(self.else_body) if self.else_body else None)


_OPPOSITES = {"==": "!=", "<": ">=", ">": "<=", "in": "not in"}
_OPPOSITES.update({v: k for k, v in _OPPOSITES.items()})


def _negate(condition: ast.Expr) -> ast.Expr:
    """`not condition`, written as the opposite comparison where there is one."""
    if isinstance(condition, ast.Compare):
        return replace(condition, op=_OPPOSITES[condition.op])
    if isinstance(condition, ast.Not):
        return condition.operand
    return ast.Not(condition)


class _Builder:
    """Turns the items found in each clause into steps."""

    def __init__(self, ctx: _Context, clauses: list[_Clause], description: str) -> None:
        self.ctx = ctx
        self.clauses = clauses
        self.description = description
        self.root: list[ast.Step] = []
        self.scopes: list[_Scope] = []
        self.offers: list[_Offer] = []
        self.unrecognised: list[str] = []
        self.values: dict[str, list[str]] = {
            k: [] for k in ("durations", "percentages", "amounts", "tags", "keywords")
        }
        self.actions: list[str] = []
        self.labels: dict[int, str] = {}  # what each message is, by id(), for the name
        self.last_tag: str | None = None
        self.trigger_args: dict[str, ast.Expr] = {}

    # -- where steps go --

    @property
    def steps(self) -> list[ast.Step]:
        return self.scopes[-1].steps if self.scopes else self.root

    def close(self, depth: int) -> None:
        while len(self.scopes) > depth:
            node = self.scopes.pop().node()
            if node is not None:
                self.steps.append(node)

    def open(self, condition: ast.Expr, *, sibling: bool) -> None:
        if sibling and self.scopes and (self.scopes[-1].body or self.scopes[-1].else_body):
            self.close(len(self.scopes) - 1)
        current = self.scopes[-1] if self.scopes else None
        if current and current.condition and not current.steps and current.else_body is None:
            current.condition = _and([current.condition, condition])
        else:
            self.scopes.append(_Scope(condition))

    # -- clauses --

    def plan(self, recognised: str | None) -> _Plan:
        previous: _Clause | None = None
        for clause in self.clauses:
            _lend_validity(previous, clause)
            previous = clause
        for clause in self.clauses:
            self.clause(clause)
        self.close(0)
        if recognised is None:
            self.unrecognised.insert(0, "what starts the automation (no trigger recognised)")
        understanding = Understanding(
            trigger=recognised,
            actions=tuple(self.actions),
            durations=tuple(self.values["durations"]),
            percentages=tuple(self.values["percentages"]),
            amounts=tuple(self.values["amounts"]),
            tags=tuple(self.values["tags"]),
            keywords=tuple(self.values["keywords"]),
            unrecognised=tuple(self.unrecognised),
        )
        args = tuple(ast.Argument(k, v) for k, v in self.trigger_args.items())
        return _Plan(
            _clean_name(self.name()),
            _one_line(self.description)[:MAX_DESCRIPTION] or None,
            self.ctx.trigger,
            args,
            tuple(self.root),
            understanding,
        )

    def clause(self, clause: _Clause) -> None:
        items = sorted(clause.items, key=lambda i: i.pos)
        kinds = {i.kind for i in items}
        if any(scope.condition is None for scope in self.scopes):
            if items or self.meaningful(clause):
                self.unrecognised.append(self.original(clause))
            return
        if "else" in kinds:
            self.otherwise(clause)
        actions = self.actions_of(clause, items)
        first = min((pos for pos, _ in actions), default=len(clause.text) + 1)
        leading, trailing, unreadable = [], [], None
        for item in items:
            if item.kind != "condition":
                continue
            if not _mentions(item.value) <= set(self.ctx.fields):
                unreadable = "leading" if item.pos < first else "trailing"
            else:
                (leading if item.pos < first else trailing).append(item.value)
        conditional = bool(kinds & {"if", "unless"})
        if conditional and not (leading or trailing or "trigger" in kinds):
            unreadable = "trailing" if actions else "leading"
        if unreadable:
            # A condition we cannot write: leave out what depends on it rather than do it
            # for every fan.
            self.unrecognised.append(self.original(clause))
            if unreadable == "leading":
                self.scopes.append(_Scope(None))
            return
        for item in items:
            self.value(item)
            if item.kind == "wait":
                self.steps.append(ast.Wait(item.value))
            elif item.kind == "trigger_arg":
                self.trigger_args.setdefault(*item.value)
        negate = "unless" in kinds
        if leading:
            condition = _and(leading)
            self.open(_negate(condition) if negate else condition, sibling=conditional)
        steps = [step for _, step in actions]
        if trailing and steps:
            condition = _and(trailing)
            steps = [
                ast.If((ast.Branch(_negate(condition) if negate else condition, tuple(steps)),))
            ]
        self.steps.extend(steps)
        self.actions.extend(step.name for _, step in actions)
        if not items and self.meaningful(clause):
            self.unrecognised.append(self.original(clause))

    def otherwise(self, clause: _Clause) -> None:
        """Start the `else` of the condition in force, or of the `if` just written."""
        if not self.scopes and self.steps and isinstance(self.steps[-1], ast.If):
            last = self.steps[-1]
            if len(last.branches) == 1 and last.else_body is None:
                self.steps.pop()
                self.scopes.append(_Scope(last.branches[0].condition, list(last.branches[0].body)))
        if self.scopes:
            self.scopes[-1].else_body = self.scopes[-1].else_body or []
        else:
            self.unrecognised.append(self.original(clause))

    def actions_of(self, clause: _Clause, items: list[_Item]) -> list[tuple[int, ast.Action]]:
        """The clause's actions with their positions: offers (each discount with the next
        validity), at most one message, and tags."""
        kinds = {i.kind for i in items}
        catalogue = self.ctx.catalog.actions
        found: list[tuple[int, ast.Action]] = []
        validities = [i.value for i in items if i.kind == "validity"]
        for discount in (i for i in items if i.kind == "discount"):
            if "create_offer" not in catalogue:
                self.unrecognised.append(f"{self.original(clause)} (no create_offer action)")
                break
            offer = _Offer(discount.value, validities.pop(0) if validities else None)
            self.offers.append(offer)
            found.append((discount.pos, offer.action()))
        if "offer_word" in kinds and not kinds & {"discount", "message"}:
            self.unrecognised.append(f"{self.original(clause)} (no discount amount)")
        message = next((i for i in items if i.kind == "message"), None)
        if message is not None:
            text, label = self.message_text(clause, message)
            send = _send(text)
            self.labels[id(send)] = label
            found.append((message.pos, send))
        for item in items:
            if item.kind not in ("add_tag", "remove_tag") or item.kind not in catalogue:
                continue
            name = item.value or self.last_tag  # "remove the tag": the one added before
            if name is None:
                self.unrecognised.append(f"{self.original(clause)} (which tag?)")
                continue
            self.last_tag = name
            tag = ast.Action(item.kind, (ast.Argument("tag", ast.String(name)),))
            found.append((item.pos, tag))
        return sorted(found, key=lambda pair: pair[0])

    def value(self, item: _Item) -> None:
        kind = {"wait": "durations", "validity": "durations", "discount": None,
                "amount": "amounts", "tag": "tags", "add_tag": "tags", "remove_tag": "tags",
                "keyword": "keywords"}.get(item.kind, "")  # fmt: skip
        if kind is None:
            kind = "percentages" if isinstance(item.value, ast.Percent) else "amounts"
        if kind and item.value is not None:
            value = item.value if isinstance(item.value, str) else expression(item.value)
            self.values[kind].append(value)

    # -- words --

    def original(self, clause: _Clause) -> str:
        return re.sub(r"⟦(\d+)⟧", lambda m: f'"{self.ctx.quotes[int(m.group(1))]}"', clause.text)

    @staticmethod
    def meaningful(clause: _Clause) -> bool:
        words = re.findall(r"[a-z][a-z']*", clause.masked)
        return any(w not in _FILLER for w in words)

    def message_text(self, clause: _Clause, item: _Item) -> tuple[str, str]:
        """The message's text, and what it is in a word or two."""
        tokens = [int(t) for t in re.findall(r"⟦(\d+)⟧", clause.masked)]
        if tokens and self.ctx.quotes[tokens[0]].strip():
            return self.ctx.quotes[tokens[0]], "message"
        if "saying" in item.extra:
            said = item.extra["saying"].strip(" .!")
            return said[:1].upper() + said[1:] + "!", "message"
        fields = self.ctx.fields
        by_name = item.extra.get("by_name") and "fan.name" in fields
        name, sp_name = (", {{ fan.name }}", " {{ fan.name }}") if by_name else ("", "")
        write, label = _MESSAGES[item.value]
        return write(self, name, sp_name), label

    def name(self) -> str:
        audience = {
            "new_subscriber": "New subscribers",
            "message_received": "Messages",
            "purchase_completed": "Purchases",
            "subscription_expiring": "Expiring subscriptions",
            "offer_redeemed": "Redeemed offers",
        }.get(self.ctx.trigger or "", (self.ctx.trigger or "").replace("_", " ").capitalize())
        parts = [_summary(step, self.labels) for step in _walk(tuple(self.root))]
        parts = list(dict.fromkeys(p for p in parts if p))
        summary = ", ".join(parts[:3]) + (", ..." if len(parts) > 3 else "")
        return f"{audience}: {summary}" if audience and summary else audience or summary


def _lend_validity(previous: _Clause | None, clause: _Clause) -> None:
    """ "10% off, valid 5 days": a clause with only a duration completes the offer before."""
    kinds = [i.kind for i in clause.items]
    if previous is None or "validity" not in kinds or "discount" in kinds:
        return
    before = [i.kind for i in previous.items]
    if before.count("discount") > before.count("validity"):
        lent = [i for i in clause.items if i.kind == "validity"]
        clause.items = [i for i in clause.items if i.kind != "validity"]
        previous.items += [replace(i, pos=len(previous.text)) for i in lent]


def _walk(steps: tuple[ast.Step, ...]) -> Iterable[ast.Step]:
    for step in steps:
        yield step
        if isinstance(step, ast.If):
            for branch in step.branches:
                yield from _walk(branch.body)
            yield from _walk(step.else_body or ())


def _summary(step: ast.Step, labels: Mapping[int, str]) -> str:
    if not isinstance(step, ast.Action):
        return ""
    args = {a.name: a.value for a in step.arguments}
    if step.name == "create_offer":
        return f"{expression(args['discount'])} off"
    if step.name in ("add_tag", "remove_tag"):
        return ("tag " if step.name == "add_tag" else "untag ") + expression(args["tag"])
    return labels.get(id(step), step.name.replace("_", " "))


def _offer_words(builder: _Builder) -> str:
    if not builder.offers:
        return "a little surprise just for you"
    offer = builder.offers[-1]
    validity = offer.validity or DEFAULT_VALIDITY
    return f"{expression(offer.discount)} off, just for you, for the next {_words(validity)}"


def _remind(builder: _Builder, name: str, sp_name: str) -> str:
    fields = builder.ctx.fields
    text = f"Just a heads-up{name}: your subscription ends soon."
    if "event.renewal_price" in fields:
        text += " Renewing is {{ event.renewal_price }}"
        return text + ", and there's lots of new content on the way! 💕"
    return text + " Renew to keep access to everything! 💕"


def _welcome(builder: _Builder, name: str, sp_name: str) -> str:
    if builder.ctx.trigger == "new_subscriber":
        return f"Welcome{name}! Thank you so much for subscribing 💕"
    return f"Welcome{name}! So happy you're here 💕"


_THANKS_FOR = {
    "purchase_completed": "your purchase",
    "offer_redeemed": "using my offer",
    "new_subscriber": "subscribing",
    "subscription_expiring": "all your support",
    "message_received": "your message",
}


def _thank(builder: _Builder, name: str, sp_name: str) -> str:
    trigger = builder.ctx.trigger or ""
    for_what = _THANKS_FOR.get(trigger, "everything")
    if trigger == "purchase_completed" and any(
        re.search(r"\btip", c.text) for c in builder.clauses
    ):
        for_what = "the tip"
    return f"Thank you so much for {for_what}{name}! 💕"


# Message intent → (how to write it, what to call it in the automation's name). The
# writers take the builder and ", {{ fan.name }}" / " {{ fan.name }}" or "" twice.
_MESSAGES: dict[str, tuple[Callable[[_Builder, str, str], str], str]] = {
    "welcome_back": (lambda b, n, s: f"Welcome back{n}! I missed you 💕", "welcome back"),
    "welcome": (_welcome, "welcome"),
    "thank": (_thank, "thank-you"),
    "remind": (_remind, "reminder"),
    "announce": (
        lambda b, n, s: f"I made you something special{n}: {_offer_words(b)} 💕",
        "offer message",
    ),
    "ask": (
        lambda b, n, s: (
            f"How are you enjoying everything so far{n}? Tell me what you'd love to see next 💕"
        ),
        "check-in",
    ),
    "hello": (lambda b, n, s: f"Hi{s}! 👋 So happy to hear from you.", "hello"),
    "reply": (lambda b, n, s: f"Thanks for your message{n}! I'll get back to you soon 💕", "reply"),
    "generic": (lambda b, n, s: f"Hi{s}! Thank you for being here 💕", "message"),
}


# --- Writing and checking ---------------------------------------------------------------------


def _send(text: str) -> ast.Action:
    return ast.Action("send_message", (ast.Argument("text", ast.String(text)),))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clean_name(name: str) -> str:
    name = _one_line(name)
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 1].rstrip() + "…"
    return name or DEFAULT_NAME


def _render(automation: ast.Automation) -> str:
    return format_module(ast.Module((automation,)))


def _placeholder_arguments(spec: TriggerSpec) -> tuple[ast.Argument, ...]:
    """A value of the right type for each required argument of a trigger."""
    if spec.config_model is None:
        return ()
    samples: dict[ValueType, ast.Expr] = {
        ValueType.NUMBER: ast.Number(Decimal(1)),
        ValueType.MONEY: ast.Money(Decimal(1)),
        ValueType.PERCENT: ast.Percent(Decimal(10)),
        ValueType.DURATION: ast.Duration(1, "d"),
        ValueType.BOOLEAN: ast.Boolean(True),
        ValueType.TEXT: ast.String("example"),
        ValueType.LIST: ast.ListExpr(()),
    }
    arguments = []
    for name, info in spec.config_model.model_fields.items():
        if not info.is_required():
            continue
        choices = getattr(info.annotation, "__args__", ())
        if choices and all(isinstance(c, str) for c in choices):  # Literal["a", "b"]
            arguments.append(ast.Argument(name, ast.String(choices[0])))
            continue
        kinds = sorted(accepted_types(info.annotation))
        if kinds:
            arguments.append(ast.Argument(name, samples[kinds[0]]))
    return tuple(arguments)


class _Fitter:
    """Keeps the steps the checker accepts: the whole automation if it checks, otherwise
    step by step, an `if` kept with the parts of its branches that check."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def ok(self, automation: ast.Automation) -> bool:
        module, diagnostics = analyse(_render(automation), self.catalog)
        return module is not None and not any(d.is_error for d in diagnostics)

    def fit(self, head: ast.Automation, body: tuple[ast.Step, ...]) -> str:
        """The checked text of ``head`` with as much of ``body`` as checks; "" if even the
        bare automation does not."""
        if head.trigger.name not in self.catalog.triggers:
            return ""
        for candidate in (
            head,
            replace(head, trigger=ast.Trigger(head.trigger.name)),
            replace(head, trigger=ast.Trigger(head.trigger.name), description=None),
        ):
            if self.ok(candidate):
                head = candidate
                break
        else:
            return ""
        whole = replace(head, body=body)
        if self.ok(whole):
            return _render(whole)
        kept = self.steps(list(body), lambda steps: replace(head, body=tuple(steps)))
        return _render(replace(head, body=tuple(kept)))

    def steps(
        self, steps: list[ast.Step], wrap: Callable[[list[ast.Step]], ast.Automation]
    ) -> list[ast.Step]:
        kept: list[ast.Step] = []
        for step in steps:
            if self.ok(wrap([*kept, step])):
                kept.append(step)
            elif isinstance(step, ast.If):
                pruned = self.if_(step, lambda node, kept=kept: wrap([*kept, node]))
                if pruned is not None:
                    kept.append(pruned)
        return kept

    def if_(self, node: ast.If, wrap: Callable[[ast.If], ast.Automation]) -> ast.If | None:
        """``node`` with the steps of each branch that check, None if none does."""
        current = _with_bodies(node, [()] * (len(node.branches) + 1))
        if not self.ok(wrap(current)):
            return None
        bodies: list[tuple[ast.Step, ...]] = [()] * (len(node.branches) + 1)
        originals = [*(b.body for b in node.branches), node.else_body or ()]
        for index, original in enumerate(originals):

            def place(steps: list[ast.Step], index: int = index) -> ast.Automation:
                trial = [*bodies]
                trial[index] = tuple(steps)
                return wrap(_with_bodies(node, trial))

            bodies[index] = tuple(self.steps(list(original), place))
        return _with_bodies(node, bodies) if any(bodies) else None


def _with_bodies(node: ast.If, bodies: list[tuple[ast.Step, ...]]) -> ast.If:
    """``node`` with these branch bodies, the last one its `else` (dropped when empty)."""
    branches = tuple(replace(b, body=body) for b, body in zip(node.branches, bodies, strict=False))
    return ast.If(branches, bodies[-1] or None)
