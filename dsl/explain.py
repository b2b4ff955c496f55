"""An automation in plain English, generated from its syntax tree.

``explain(automation)`` says what will actually run, step by step, so that a person can
review an automation before saving it, whoever (or whatever) wrote the text. It is
deterministic and never guesses: the built-in triggers and actions have their own
phrasing, and anything else (a third-party trigger or action) is described from its
name, its arguments and, when a catalogue is given, the plugin's own description::

    “Welcome” — Say hi
    When a fan subscribes:
    1. Send them the message “Hey {{ fan.name }}!”.
    2. If their total spent is less than $10.00 and they are not tagged “welcomed”:
         1. Wait 2 days.
         2. Create an offer of 20% off for them, valid for 48 hours, named “Welcome 20%”.
    3. Tag them “welcomed”.

Any tree the parser can build is explained, including ones the checker would refuse:
what cannot be phrased in words is shown as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from dsl import ast
from dsl.catalog import Catalog, ValueType
from dsl.values import CURRENCY_SYMBOLS

# Control characters (and the Unicode line separators) are shown as escapes, so a message
# never hides a line break or a character the reader cannot see.
_ESCAPES = {c: f"\\u{{{c:x}}}" for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
_ESCAPES.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})

_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}

_TRIGGERS = {
    "new_subscriber": "When a fan subscribes",
    "message_received": "When a fan sends you a message",
    "purchase_completed": "When a fan buys something",
    "subscription_expiring": "When a fan's subscription is about to end",
    "offer_redeemed": "When a fan redeems an offer",
}

_FAN_FIELDS = {
    "fan.name": "their name",
    "fan.username": "their username",
    "fan.total_spent": "their total spent",
    "fan.tags": "their tags",
    "fan.country": "their country",
    "fan.subscribed_at": "when they subscribed",
    "fan.message_count": "the number of messages they have sent you",
}

_EVENT_FIELDS = {
    "message_received": {"event.text": "their message"},
    "purchase_completed": {"event.amount": "the amount paid", "event.item": "the item bought"},
    "subscription_expiring": {
        "event.days_left": "the number of days left",
        "event.renewal_price": "the renewal price",
    },
    "offer_redeemed": {
        "event.offer_id": "the offer's id",
        "event.offer_name": "the offer's name",
        "event.amount": "the price before the discount",
        "event.discount": "the discount given",
        "event.paid": "the amount paid",
        "event.currency": "the offer's currency",
        "event.code": "the code used",
        "event.redemption_id": "the redemption's id",
    },
}

# Text fields of the built-in triggers: `in` on them looks inside the text.
_TEXT_FIELDS = {"fan.name", "fan.username", "fan.country", "event.text", "event.item",
                "event.offer_name", "event.code"}  # fmt: skip

_COMPARISONS = {
    "==": "is",
    "!=": "is not",
    "<": "is less than",
    "<=": "is at most",
    ">": "is more than",
    ">=": "is at least",
}
_OPPOSITES = {"==": "!=", "!=": "==", "in": "not in", "not in": "in"}

# How far the steps of an `if` arm are indented past the arm's own line.
_ARM_INDENT = 2


def explain(automation: ast.Automation | ast.Module, catalog: Catalog | None = None) -> str:
    """What ``automation`` (or every automation of a module) does, in plain English.

    ``catalog`` supplies the descriptions of third-party triggers and actions and the
    types of the trigger's fields; without it, built-ins are still described in full.
    """
    if isinstance(automation, ast.Module):
        if not automation.automations:
            return "No automations."
        return "\n\n".join(_Explainer(a, catalog).run() for a in automation.automations)
    return _Explainer(automation, catalog).run()


class _Explainer:
    def __init__(self, automation: ast.Automation, catalog: Catalog | None) -> None:
        self.automation = automation
        self.catalog = catalog
        self.trigger = automation.trigger.name
        spec = catalog.triggers.get(self.trigger) if catalog is not None else None
        self.field_types = dict(spec.fields) if spec is not None else {}
        self.lines: list[str] = []

    def run(self) -> str:
        automation = self.automation
        title = quoted(automation.name)
        if automation.description:
            title += " — " + _escape(automation.description)
        self.lines.append(title)
        self.lines.append(self.trigger_phrase(automation.trigger) + ":")
        self.block(automation.body, 0)
        return "\n".join(self.lines)

    # --- Trigger -----------------------------------------------------------------------

    def trigger_phrase(self, trigger: ast.Trigger) -> str:
        arguments = list(trigger.arguments)
        if trigger.name == "subscription_expiring":
            days = _take(arguments, "days_before", ast.Number)
            phrase = _TRIGGERS[trigger.name]
            if days is not None:
                phrase += f", with exactly {_count(days.value, 'day')} left"
        elif trigger.name in _TRIGGERS:
            phrase = _TRIGGERS[trigger.name]
        else:
            phrase = f"When `{trigger.name}` happens"
            description = self.description("triggers", trigger.name)
            if description:
                phrase += f" ({description})"
        if arguments:
            phrase += ", with " + self.arguments(arguments)
        return phrase

    def description(self, kind: str, name: str) -> str | None:
        if self.catalog is None:
            return None
        spec = getattr(self.catalog, kind).get(name)
        if spec is None or not spec.description.strip():
            return None
        return _escape(spec.description.strip().rstrip("."))

    # --- Steps -------------------------------------------------------------------------

    def block(self, steps: Sequence[ast.Step], indent: int) -> None:
        if not steps:
            self.lines.append(" " * indent + "Do nothing.")
            return
        for number, step in enumerate(steps, start=1):
            label = f"{number}. "
            match step:
                case ast.Wait(duration=duration):
                    self.lines.append(f"{' ' * indent}{label}Wait {duration_words(duration)}.")
                case ast.Action():
                    self.lines.append(f"{' ' * indent}{label}{self.action(step)}.")
                case ast.If():
                    self.if_(step, indent, label)

    def if_(self, node: ast.If, indent: int, label: str) -> None:
        # The arms' headers line up with the text after the step's number.
        arm = indent + len(label)
        for i, branch in enumerate(node.branches):
            condition = self.condition(branch.condition)
            if i == 0:
                self.lines.append(f"{' ' * indent}{label}If {condition}:")
            else:
                self.lines.append(f"{' ' * arm}Otherwise, if {condition}:")
            self.block(branch.body, arm + _ARM_INDENT)
        if node.else_body is not None:
            self.lines.append(f"{' ' * arm}Otherwise:")
            self.block(node.else_body, arm + _ARM_INDENT)

    def action(self, action: ast.Action) -> str:
        phrase = _BUILT_IN_ACTIONS.get(action.name)
        if phrase is not None:
            text = phrase(self, list(action.arguments))
            if text is not None:
                return text
        text = f"Run `{action.name}`"
        description = self.description("actions", action.name)
        if description:
            text += f" ({description})"
        if action.arguments:
            text += " with " + self.arguments(list(action.arguments))
        return text

    def arguments(self, arguments: Sequence[ast.Argument]) -> str:
        return ", ".join(f"{words(a.name)}: {self.value(a.value)}" for a in arguments)

    # --- Built-in actions: None when the arguments are not the expected ones ----------

    def send_message(self, arguments: list[ast.Argument]) -> str | None:
        text = _take(arguments, "text", ast.String)
        if text is None or arguments:
            return None
        return f"Send them the message {quoted(text.value)}"

    def add_tag(self, arguments: list[ast.Argument]) -> str | None:
        tag = _take(arguments, "tag", ast.String)
        if tag is None or arguments:
            return None
        return f"Tag them {quoted(tag.value)}"

    def remove_tag(self, arguments: list[ast.Argument]) -> str | None:
        tag = _take(arguments, "tag", ast.String)
        if tag is None or arguments:
            return None
        return f"Remove the tag {quoted(tag.value)} from them"

    def create_offer(self, arguments: list[ast.Argument]) -> str | None:
        discount = _take(arguments, "discount", (ast.Percent, ast.Money))
        valid_for = _take(arguments, "valid_for", ast.Duration)
        if discount is None or valid_for is None:
            return None
        audience = _take(arguments, "audience", ast.String)
        if audience is not None and audience.value not in ("fan", "all"):
            return None
        whom = "every fan" if audience is not None and audience.value == "all" else "them"
        parts = [
            f"Create an offer of {self.value(discount)} off for {whom}",
            f"valid for {duration_words(valid_for)}",
        ]
        minimum = _take(arguments, "min_purchase", ast.Money)
        if minimum is not None:
            parts.append(f"on a purchase of at least {money_words(minimum)}")
        uses = _take(arguments, "uses", ast.Number)
        if uses is not None:
            each = " by each fan" if whom == "every fan" else ""
            parts.append(f"usable {_count(uses.value, 'time')}{each}")
        name = _take(arguments, "name", ast.String)
        if name is not None:
            parts.append(f"named {quoted(name.value)}")
        if arguments:
            parts.append("with " + self.arguments(arguments))
        return ", ".join(parts)

    # --- Conditions and values ---------------------------------------------------------

    def condition(self, expr: ast.Expr) -> str:
        """A condition as a clause: "their country is “US”"."""
        match expr:
            case ast.BoolOp():
                return self.bool_op(expr)
            case ast.Not(operand=operand):
                return self.negation(operand)
            case ast.Compare():
                return self.compare(expr.op, expr.left, expr.right)
            case ast.Field():
                return f"{self.value(expr)} is true"
        return self.value(expr)

    def bool_op(self, node: ast.BoolOp) -> str:
        # `a and b and c` is one chain; a chain of the other operator inside it is
        # put in parentheses, so "a or (b and c)" cannot be read the wrong way.
        parts = []
        stack: list[ast.Expr] = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, ast.BoolOp) and item.op == node.op:
                stack.extend((item.right, item.left))
            elif isinstance(item, ast.BoolOp):
                parts.append(f"({self.bool_op(item)})")
            elif isinstance(item, ast.Not) and not isinstance(item.operand, ast.Compare):
                # "it is not true that ..." would seem to reach over the rest of the chain.
                parts.append(f"({self.negation(item.operand)})")
            else:
                parts.append(self.condition(item))
        return f" {node.op} ".join(parts)

    def negation(self, operand: ast.Expr) -> str:
        # `not a == b` is exactly `a != b` (and `not in`, `in`), missing values included;
        # `not a < b` is not `a >= b` when a value is missing: "a is not less than b".
        if isinstance(operand, ast.Compare) and operand.op in _OPPOSITES:
            return self.compare(_OPPOSITES[operand.op], operand.left, operand.right)
        if isinstance(operand, ast.Compare):
            verb = _COMPARISONS[operand.op].replace("is ", "is not ", 1)
            return f"{self.operand(operand.left)} {verb} {self.operand(operand.right)}"
        if isinstance(operand, ast.BoolOp):
            return f"it is not true that ({self.bool_op(operand)})"
        return f"it is not true that {self.condition(operand)}"

    def compare(self, op: str, left: ast.Expr, right: ast.Expr) -> str:
        if op in ("in", "not in"):
            return self.membership(op == "not in", left, right)
        return f"{self.operand(left)} {_COMPARISONS[op]} {self.operand(right)}"

    def membership(self, negated: bool, left: ast.Expr, right: ast.Expr) -> str:
        item = self.operand(left)
        if isinstance(right, ast.Field) and right.dotted == "fan.tags":
            return f"they are {'not ' if negated else ''}tagged {item}"
        if isinstance(right, ast.ListExpr):
            if not right.items:
                return f"{item} is {'not ' if negated else ''}in an empty list"
            # In brackets: "one of “FR”, “BE” or ..." would seem to go on with the list.
            return f"{item} is {'not ' if negated else ''}one of {self.value(right)}"
        if isinstance(right, ast.String) or self.is_text(right):
            verb = "does not contain" if negated else "contains"
            return f"{self.operand(right)} {verb} {item} (ignoring case)"
        return f"{item} is {'not ' if negated else ''}in {self.operand(right)}"

    def is_text(self, node: ast.Expr) -> bool:
        if not isinstance(node, ast.Field):
            return False
        kind = self.field_types.get(node.dotted)
        return kind is ValueType.TEXT if kind is not None else node.dotted in _TEXT_FIELDS

    def operand(self, node: ast.Expr) -> str:
        """A value inside a comparison: a nested condition gets parentheses."""
        if isinstance(node, (ast.BoolOp, ast.Not, ast.Compare)):
            return f"({self.condition(node)})"
        return self.value(node)

    def value(self, node: ast.Expr) -> str:
        match node:
            case ast.String(value=value):
                return quoted(value)
            case ast.Number(value=value):
                return number_words(value)
            case ast.Money():
                return money_words(node)
            case ast.Percent(value=value):
                return f"{number_words(value)}%"
            case ast.Duration():
                return duration_words(node)
            case ast.Boolean(value=value):
                return "true" if value else "false"
            case ast.ListExpr(items=items):
                return "[" + ", ".join(self.value(i) for i in items) + "]"
            case ast.Field():
                return self.field(node)
        return f"({self.condition(node)})"

    def field(self, node: ast.Field) -> str:
        name = node.dotted
        known = _EVENT_FIELDS.get(self.trigger, {}).get(name) or _FAN_FIELDS.get(name)
        if known:
            return known
        if len(node.path) == 2 and node.path[0] == "fan":
            return f"their {words(node.path[1])}"
        if len(node.path) == 2 and node.path[0] == "event":
            return f"the event's {words(node.path[1])}"
        return f"`{name}`"


_BUILT_IN_ACTIONS: dict[str, Callable[[_Explainer, list[ast.Argument]], str | None]] = {
    "send_message": _Explainer.send_message,
    "add_tag": _Explainer.add_tag,
    "remove_tag": _Explainer.remove_tag,
    "create_offer": _Explainer.create_offer,
}


def _take(arguments: list[ast.Argument], name: str, kind) -> ast.Expr | None:
    """Remove and return the value of the argument ``name`` if it is a ``kind``."""
    for i, argument in enumerate(arguments):
        if argument.name == name and isinstance(argument.value, kind):
            del arguments[i]
            return argument.value
    return None


# --- Values in words ----------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def quoted(text: str) -> str:
    """Text between typographic quotes, control characters shown as escapes."""
    return f"“{_escape(text)}”"


def words(name: str) -> str:
    return name.replace("_", " ")


def number_words(value: Decimal) -> str:
    text = format(value, "f")
    # -0 and 0.000 read as 0; a number with a fraction keeps the digits written.
    return "0" if value == 0 else text


def money_words(node: ast.Money) -> str:
    symbol = CURRENCY_SYMBOLS.get(node.currency)
    amount = f"{node.amount:,.2f}"
    return f"{symbol}{amount}" if symbol else f"{amount} {node.currency}"


def duration_words(node: ast.Duration) -> str:
    return _count(node.amount, _UNITS[node.unit])


def _count(amount: int | Decimal, noun: str) -> str:
    number = f"{amount:,}" if isinstance(amount, int) else number_words(amount)
    return f"{number} {noun}" if amount == 1 else f"{number} {noun}s"
