"""Semantic checks: a parsed module against the installed plugins.

``check(module, catalog)`` returns every problem at once — unknown triggers, actions,
arguments and fields with "did you mean", missing arguments, argument values validated
by the plugin's own config model (reported at the argument, not as a pydantic dump),
type errors in conditions, template placeholders — and warnings for duplicate names,
constant conditions and unreachable branches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from dsl import ast
from dsl.catalog import Catalog, ValueType
from dsl.conditions import evaluate, to_json
from dsl.diagnostics import Diagnostic, did_you_mean, error, warning
from dsl.templates import check_placeholder
from dsl.types import accepted_types, describe, literal_type, literal_value

ORDERED = {ValueType.NUMBER, ValueType.MONEY, ValueType.PERCENT, ValueType.DURATION,
           ValueType.DATETIME}  # fmt: skip
NUMERIC = {ValueType.NUMBER, ValueType.MONEY}


def check(module: ast.Module, catalog: Catalog) -> list[Diagnostic]:
    """Every semantic problem in ``module``, in source order."""
    diagnostics: list[Diagnostic] = []
    seen: dict[str, ast.Automation] = {}
    for automation in module.automations:
        if automation.name in seen:
            first = seen[automation.name]
            diagnostics.append(
                warning(
                    f'another automation is already named "{automation.name}" '
                    f"(line {first.span.line})",
                    automation.span,
                    hint="give each automation its own name",
                    code="duplicate-name",
                )
            )
        seen.setdefault(automation.name, automation)
        diagnostics.extend(_AutomationChecker(catalog).run(automation))
    return sorted(diagnostics, key=lambda d: (d.span.line, d.span.column))


class _AutomationChecker:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.fields: Mapping[str, ValueType] | None = None
        self.out: list[Diagnostic] = []

    def run(self, automation: ast.Automation) -> list[Diagnostic]:
        self.trigger(automation.trigger)
        if automation.name.strip() == "":
            self.out.append(error("an automation needs a name", automation.span, code="name"))
        self.steps(automation.body)
        return self.out

    # --- Trigger and steps -------------------------------------------------------

    def unknown(self, kind: str, node: ast.Trigger | ast.Action, known: Mapping) -> None:
        self.out.append(
            error(
                f"unknown {kind} `{node.name}`",
                node.span,
                hint=did_you_mean(node.name, known) or _known(f"{kind}s", known),
                code=f"unknown-{kind}",
            )
        )

    def trigger(self, trigger: ast.Trigger) -> None:
        spec = self.catalog.triggers.get(trigger.name)
        if spec is None:
            self.unknown("trigger", trigger, self.catalog.triggers)
            return
        self.fields = spec.fields
        self.arguments(f"the trigger `{trigger.name}`", spec.config_model, trigger)

    def steps(self, steps: Sequence[ast.Step]) -> None:
        for step in steps:
            match step:
                case ast.Action():
                    self.action(step)
                case ast.Wait(duration=duration):
                    if duration.seconds == 0:
                        self.out.append(
                            error("`wait 0` waits for nothing", step.span,
                                  hint="wait at least 1m, or remove the step", code="wait")
                        )  # fmt: skip
                case ast.If():
                    self.branches(step)

    def action(self, action: ast.Action) -> None:
        spec = self.catalog.actions.get(action.name)
        if spec is None:
            self.unknown("action", action, self.catalog.actions)
            return
        self.arguments(f"`{action.name}`", spec.config_model, action)

    # --- Arguments -----------------------------------------------------------------

    def arguments(
        self, owner: str, model: type[BaseModel] | None, node: ast.Action | ast.Trigger
    ) -> None:
        if model is None:
            if node.arguments:
                self.out.append(
                    error(f"{owner} takes no arguments", node.arguments[0].span, code="argument")
                )
            return
        model_fields = model.model_fields
        values: dict[str, Any] = {}
        spans: dict[str, ast.Span] = {}
        for arg in node.arguments:
            if arg.name in spans:
                self.out.append(
                    error(f"`{arg.name}` is given twice", arg.span, code="argument/duplicate")
                )
                continue
            spans[arg.name] = arg.span
            if arg.name not in model_fields:
                self.out.append(
                    error(
                        f"{owner} has no argument `{arg.name}`",
                        arg.span,
                        hint=did_you_mean(arg.name, model_fields)
                        or _known("arguments", model_fields),
                        code="argument/unknown",
                    )
                )
                continue
            value = self.argument_value(arg, model_fields[arg.name].annotation)
            if value is not None:
                values[arg.name] = value
        missing = [
            name for name, info in model_fields.items() if info.is_required() and name not in spans
        ]
        for name in missing:
            kind = describe(accepted_types(model_fields[name].annotation))
            self.out.append(
                error(
                    f"{owner} needs the argument `{name}`",
                    node.span,
                    hint=f"add `{name}: ...` ({kind})",
                    code="argument/missing",
                )
            )
        if missing or len(values) < len(spans):
            return  # the model cannot be validated with holes in it
        try:
            model.model_validate(values)
        except ValidationError as exc:
            self.validation_errors(exc, spans, owner, node.span)

    def argument_value(self, arg: ast.Argument, annotation: Any) -> Any:
        """The Python value of an argument, or None after reporting why it has none."""
        if not _is_literal(arg.value):
            self.out.append(
                error(
                    f"the value of `{arg.name}` must be written out",
                    arg.value.span,
                    hint="arguments take text, numbers, money, percentages, durations, "
                    "true/false or lists; use {{ placeholders }} inside text for fields",
                    code="argument/value",
                )
            )
            return None
        given = literal_type(arg.value)
        accepted = accepted_types(annotation)
        if accepted and given not in accepted:
            self.out.append(
                error(
                    f"`{arg.name}` expects {describe(accepted)}, found {describe({given})}",
                    arg.value.span,
                    code="argument/type",
                )
            )
            return None
        self.placeholders(arg.value)
        return literal_value(arg.value)

    def placeholders(self, value: ast.Expr) -> None:
        if self.fields is None:
            return
        strings = value.items if isinstance(value, ast.ListExpr) else (value,)
        for item in strings:
            if isinstance(item, ast.String):
                for placeholder in item.placeholders:
                    self.out.extend(check_placeholder(placeholder, self.fields))

    def validation_errors(
        self,
        exc: ValidationError,
        spans: Mapping[str, ast.Span],
        owner: str,
        node_span: ast.Span,
    ) -> None:
        reported: set[str] = set()
        for problem in exc.errors():
            name = str(problem["loc"][0]) if problem["loc"] else ""
            if name in reported:
                continue
            reported.add(name)
            message = problem["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            message = message[:1].lower() + message[1:]
            # A model-level validator names no argument (and may fail with none given):
            # the problem belongs to the whole action or trigger.
            if name in spans:
                text, span = f"invalid `{name}`: {message}", spans[name]
            else:
                text, span = f"invalid arguments for {owner}: {message}", node_span
            self.out.append(error(text, span, code="argument/invalid"))

    # --- Conditions ------------------------------------------------------------------

    def branches(self, node: ast.If) -> None:
        settled = False  # an earlier branch always runs: the rest never do
        seen: list[ast.Expr] = []
        for branch in node.branches:
            condition_type = self.expression(branch.condition)
            if condition_type not in (None, ValueType.BOOLEAN):
                self.out.append(
                    error(
                        "a condition must be true or false",
                        branch.condition.span,
                        hint="compare the value with something, as in `fan.total_spent > $20`",
                        code="type/condition",
                    )
                )
            constant = self.constant(branch.condition) if condition_type else None
            if settled or branch.condition in seen or constant is False:
                self.out.append(
                    warning(
                        "this branch can never run",
                        branch.span,
                        hint="an earlier branch always runs, or this condition is never true",
                        code="unreachable",
                    )
                )
            if constant is True:
                settled = True
            seen.append(branch.condition)
            self.steps(branch.body)
        if node.else_body is not None:
            if settled and node.else_body:
                self.out.append(
                    warning(
                        "the `else` branch can never run",
                        node.else_body[0].span,
                        hint="an earlier condition is always true",
                        code="unreachable",
                    )
                )
            self.steps(node.else_body)

    def constant(self, condition: ast.Expr) -> bool | None:
        if _mentions_field(condition):
            return None
        value = evaluate(to_json(condition), {})
        self.out.append(
            warning(
                f"this condition is always {'true' if value else 'false'}",
                condition.span,
                hint="a condition usually tests a field, as in `fan.total_spent > $20`",
                code="constant-condition",
            )
        )
        return value

    def expression(self, expr: ast.Expr) -> ValueType | None:
        """The type of ``expr``, reporting type errors; None when it cannot be known."""
        match expr:
            case ast.Field():
                return self.field(expr)
            case ast.Not(operand=operand):
                self.boolean_operand(operand, "not")
                return ValueType.BOOLEAN
            case ast.BoolOp(op=op, left=left, right=right):
                self.boolean_operand(left, op)
                self.boolean_operand(right, op)
                return ValueType.BOOLEAN
            case ast.Compare():
                self.comparison(expr)
                return ValueType.BOOLEAN
            case ast.ListExpr(items=items):
                for item in items:
                    known = self.expression(item) is not None
                    if known and not _is_literal(item):
                        # Lists are literals: conditions compile them to constant sets.
                        self.out.append(
                            error(
                                "a list holds written-out values",
                                item.span,
                                hint='as in `fan.country in ["US", "CA"]`',
                                code="type/list",
                            )
                        )
                return ValueType.LIST
        return literal_type(expr)

    def boolean_operand(self, operand: ast.Expr, op: str) -> None:
        kind = self.expression(operand)
        if kind not in (None, ValueType.BOOLEAN):
            self.out.append(
                error(
                    f"`{op}` needs conditions on both sides, found {describe({kind})}",
                    operand.span,
                    hint='compare the value with something, as in `fan.country == "US"`',
                    code="type/condition",
                )
            )

    def field(self, node: ast.Field) -> ValueType | None:
        if self.fields is None:
            return None
        name = node.dotted
        kind = self.fields.get(name)
        if kind is not None:
            return kind
        children = sorted(f for f in self.fields if f.startswith(name + "."))
        if children:
            hint = "its fields: " + ", ".join(f"`{f}`" for f in children[:6])
            message = f"`{name}` is a group of fields, not a value"
        else:
            hint = did_you_mean(name, self.fields) or _known("fields", self.fields)
            message = f"unknown field `{name}`"
        self.out.append(error(message, node.span, hint=hint, code="unknown-field"))
        return None

    def comparison(self, node: ast.Compare) -> None:
        left, right = self.expression(node.left), self.expression(node.right)
        if left is None or right is None:
            return
        if node.op in ("in", "not in"):
            if right is ValueType.LIST:
                element = _list_element_type(node.right)
                if element is not None and left is not element and left is not ValueType.TEXT:
                    self.mismatch(node, left, element)
                elif left not in (ValueType.TEXT, ValueType.NUMBER):
                    self.mismatch(node, left, ValueType.TEXT)
            elif right is ValueType.TEXT:
                if left is not ValueType.TEXT:
                    self.mismatch(node, left, right)
            else:
                self.out.append(
                    error(
                        f"`{node.op}` needs a list or text on its right, found {describe({right})}",
                        node.right.span,
                        hint='as in `"vip" in fan.tags` or `fan.country in ["US", "CA"]`',
                        code="type/in",
                    )
                )
            return
        if left is not right and not (left in NUMERIC and right in NUMERIC):
            self.mismatch(node, left, right)
        elif node.op not in ("==", "!=") and left not in ORDERED:
            self.out.append(
                error(
                    f"`{node.op}` cannot order {describe({left})}",
                    node.span,
                    hint="use `==` or `!=` to compare text, or `in` to look inside it",
                    code="type/order",
                )
            )

    def mismatch(self, node: ast.Compare, left: ValueType, right: ValueType) -> None:
        self.out.append(
            error(
                f"cannot compare {describe({left})} with {describe({right})}",
                node.span,
                hint=_mismatch_hint(left, right),
                code="type/compare",
            )
        )


def _mismatch_hint(left: ValueType, right: ValueType) -> str | None:
    pair = {left, right}
    if pair == {ValueType.PERCENT, ValueType.MONEY}:
        return "a percentage where money is expected: write money as $20"
    if ValueType.TEXT in pair and pair & NUMERIC:
        return 'numbers are written without quotes: `10`, not `"10"`'
    return None


def _list_element_type(node: ast.Expr) -> ValueType | None:
    if isinstance(node, ast.ListExpr) and node.items and all(_is_literal(i) for i in node.items):
        kinds = {literal_type(i) for i in node.items}
        if len(kinds) == 1:
            return kinds.pop()
    return None


def _is_literal(node: ast.Expr) -> bool:
    if isinstance(node, ast.ListExpr):
        return all(_is_literal(item) for item in node.items)
    return isinstance(
        node, (ast.String, ast.Number, ast.Money, ast.Percent, ast.Duration, ast.Boolean)
    )


def _mentions_field(node: ast.Expr) -> bool:
    match node:
        case ast.Field():
            return True
        case ast.Not(operand=operand):
            return _mentions_field(operand)
        case ast.BoolOp(left=left, right=right) | ast.Compare(left=left, right=right):
            return _mentions_field(left) or _mentions_field(right)
        case ast.ListExpr(items=items):
            return any(_mentions_field(i) for i in items)
    return False


def _known(what: str, names: Mapping[str, object]) -> str:
    listed = sorted(names)
    if not listed:
        return f"no {what} are available"
    shown = ", ".join(f"`{n}`" for n in listed[:8])
    return f"available {what}: {shown}" + (", ..." if len(listed) > 8 else "")
