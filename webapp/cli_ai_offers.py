"""``huntaze ai offers``: a creator's numbers, and prices, bundles and discounts suggested
from them (plugins/offers/insights.py and ai.py) by the model of the ``HUNTAZE_LLM_*``
settings, or offline by the analysis itself.

The history is the engine's database (``DATABASE_URL``, or the embedded one): the
creator's ``purchase_completed`` events, fans and offers. Exit status: 0 with an answer
(suggestions, or a note that there is nothing to suggest); 1 when the model failed or
on an error (no such creator, a database without the schema, invalid settings).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from plugins.offers.ai import (
    BundleSuggestion,
    DiscountRecommendation,
    PricingSuggestion,
    Suggestions,
    recommend_discounts,
    suggest_bundles,
    suggest_pricing,
)
from plugins.offers.insights import Insights, load_insights
from webapp.cli_llm import llm_client

TOP_PAIRS = 5


@click.group()
def offers() -> None:
    """Prices, bundles and discounts suggested from a creator's own sales history."""


def _common(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--format", "output_format", type=click.Choice(["text", "json"]), default="text",
        show_default=True, help="json prints the whole result as one object.",
    )(command)  # fmt: skip
    command = click.option(
        "--as-of", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]),
        help="Measure recency from this moment (with its zone, 2026-11-30T12:00:00+00:00). "
        "Default: the creator's latest event.",
    )(command)  # fmt: skip
    return click.option(
        "--creator", "creator_name", required=True, metavar="NAME",
        help="The creator (their name, as `huntaze run --creator` gave it, or their id).",
    )(command)  # fmt: skip


@offers.command()
@_common
def insights(creator_name: str, as_of: datetime | None, output_format: str) -> None:
    """The numbers the suggestions start from: items, items bought together, fan
    segments and past offers."""
    found = _insights(creator_name, as_of)
    if output_format == "json":
        click.echo(found.model_dump_json(indent=2))
    else:
        print_insights(creator_name, found)


@offers.command()
@_common
@click.option("--item", required=True, help="The item to price, as its sales name it.")
def pricing(creator_name: str, as_of: datetime | None, output_format: str, item: str) -> None:
    """Prices for one item (design: suggestPricing)."""
    found = _insights(creator_name, as_of)
    with llm_client() as client:
        result = suggest_pricing(item, found, client)
    _report(result, output_format, f"Prices for {item}", _pricing_lines)


@offers.command()
@_common
def bundles(creator_name: str, as_of: datetime | None, output_format: str) -> None:
    """Bundles of items the same fans buy (design: suggestBundles)."""
    found = _insights(creator_name, as_of)
    with llm_client() as client:
        result = suggest_bundles(found, client)
    _report(result, output_format, "Bundles", _bundle_lines)


@offers.command()
@_common
def discounts(creator_name: str, as_of: datetime | None, output_format: str) -> None:
    """Discounts for the creator's fan segments, within their policy (design:
    recommendDiscounts)."""
    found, policy = _insights(creator_name, as_of, with_policy=True)
    with llm_client() as client:
        result = recommend_discounts(found, client, max_percentage=float(policy.max_discount),
                                     max_fixed=_float(policy.max_fixed_discount))  # fmt: skip
    _report(result, output_format, "Discounts", _discount_lines)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- Reading the history ----------------------------------------------------------------


def _insights(creator_name: str, as_of: datetime | None, with_policy: bool = False) -> Any:
    """The creator's insights (and policy), read from the engine's database."""
    from sqlalchemy import or_, select
    from sqlalchemy.exc import SQLAlchemyError

    from engine.creators import get_policy
    from engine.models import Creator
    from engine.settings import Settings

    settings = Settings()
    database = _open(settings.resolved_database_url(), settings.db_attempts)
    query = (
        select(Creator.id)
        .where(or_(Creator.name == creator_name, Creator.id == creator_name))
        .order_by(Creator.created_at.desc())
        .limit(1)
    )
    try:
        creator_id = database.run(lambda s: s.scalar(query))
        if creator_id is None:
            raise click.ClickException(
                f"no creator named {creator_name!r} in the database "
                "(`huntaze run --creator NAME` creates one)"
            )
        found = load_insights(database, creator_id, as_of)
        if not with_policy:
            return found
        policy = database.run(
            lambda s: get_policy(s, creator_id, settings.messages_per_fan_per_day)
        )
        return found, policy
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot read the database: {exc}") from None
    finally:
        database.dispose()


# The tables the suggestions read: the engine's and the offers plugin's.
TABLES = ("creators", "events", "fans", "offers", "offer_redemptions")


def _open(url: str, attempts: int) -> Any:
    """The database at ``url``, which must exist and hold the tables read here."""
    from sqlalchemy import inspect, make_url
    from sqlalchemy.exc import SQLAlchemyError

    from engine.db import Database

    path = make_url(url).database
    if url.startswith("sqlite") and path and path != ":memory:" and not Path(path).exists():
        raise click.ClickException(
            f"no database at {path}: `huntaze run` records events there (or set DATABASE_URL)"
        )
    try:
        database = Database(url, attempts=attempts)
        missing = [t for t in TABLES if not inspect(database.engine).has_table(t)]
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from None
    if missing:
        database.dispose()
        raise click.ClickException(
            f"the database lacks the tables {', '.join(missing)}: run `huntaze db upgrade`"
        )
    return database


# --- Printing ---------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"${value:,.2f}"


def print_insights(name: str, found: Insights) -> None:
    click.echo(
        f"{name}: {found.sales} sales, {_money(found.revenue)} from {found.buyers} buyers "
        f"of {found.fans} fans, as of {found.as_of:%Y-%m-%d %H:%M} UTC"
        + (f" ({found.skipped} purchase events unreadable, left out)" if found.skipped else "")
    )
    if found.items:
        click.echo(f"\n{'item':<20} {'sales':>5} {'buyers':>6} {'revenue':>10} "
                   f"{'price':>8} {'median':>8}  sales by price")  # fmt: skip
        for s in found.items:
            levels = ", ".join(f"{lv.sales} at {_money(lv.price)}" for lv in s.levels)
            prices = f"{_money(s.current_price):>8} {_money(s.median_price):>8}"
            click.echo(f"{s.item:<20} {s.sales:>5} {s.buyers:>6} {_money(s.revenue):>10} "
                       f"{prices}  {levels}")  # fmt: skip
    if found.pairs:
        click.echo(f"\n{'bought together':<32} {'fans':>4} {'support':>8} "
                   f"{'confidence':>11} {'lift':>5}")  # fmt: skip
        for p in found.pairs[:TOP_PAIRS]:
            both = f"{p.a} + {p.b}"
            confidence = f"{p.confidence_a_to_b:.0%} / {p.confidence_b_to_a:.0%}"
            click.echo(f"{both:<32} {p.fans:>4} {p.support:>8.1%} {confidence:>11} "
                       f"{p.lift:>5.2f}")  # fmt: skip
        if len(found.pairs) > TOP_PAIRS:
            click.echo(f"(and {len(found.pairs) - TOP_PAIRS} more pairs; --format json lists all)")
    if found.segments:
        click.echo(f"\n{'segment':<13} {'fans':>4} {'share':>6} {'avg spend':>10} "
                   f"{'days since purchase':>19}  who")  # fmt: skip
        for g in found.segments:
            since = g.average_days_since_purchase
            days = "-" if since is None else f"{since:g}"
            click.echo(f"{g.name:<13} {g.fans:>4} {g.share:>6.1%} {_money(g.average_spend):>10} "
                       f"{days:>19}  {g.description}")  # fmt: skip
    redeemed = [o for o in found.offers if o.redemptions]
    click.echo(f"\noffers redeemed: {'none' if not redeemed else len(redeemed)}")
    for o in redeemed:
        click.echo(f"  {o.name}: {o.redemptions} redemptions by {o.fans} fans, "
                   f"{_money(o.revenue)} paid, {_money(o.discount_given)} off")  # fmt: skip


def _report(
    result: Suggestions, output_format: str, title: str, lines: Callable[[Any], list[str]]
) -> None:
    if output_format == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        if result.suggestions:
            click.echo(f"{title}:")
        for number, suggestion in enumerate(result.suggestions, start=1):
            first, *rest = lines(suggestion)
            click.echo(f"{number}. {first}")
            for line in rest:
                click.echo(f"   {line}")
        if result.note:
            click.echo(f"nothing to suggest: {result.note}")
        if result.dropped:
            click.echo(f"dropped {len(result.dropped)} that broke the rules:")
            for reason in result.dropped:
                click.echo(f"  - {reason}")
        if result.suggestions or result.dropped or result.note:
            click.echo(f"\n{_how_made(result)}")
    if result.error:
        click.echo(f"error: {result.error}", err=True)
        raise SystemExit(1)


def _how_made(result: Suggestions) -> str:
    if result.source == "offline":
        return "suggested offline from the analysis itself (set HUNTAZE_LLM_PROVIDER for a model)"
    usage = result.usage
    return (
        f"suggested by {result.model or result.provider} ({result.provider}), "
        f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
    )


def _pricing_lines(s: PricingSuggestion) -> list[str]:
    return [f"{_money(s.recommended_price)}, confidence {s.confidence:.2f}",
            f"impact: {s.expected_impact}", f"why: {s.reasoning}"]  # fmt: skip


def _bundle_lines(s: BundleSuggestion) -> list[str]:
    return [f"{s.name}: {', '.join(s.content_ids)} for {_money(s.suggested_price)}",
            f"value: {s.expected_value}", f"why: {s.reasoning}"]  # fmt: skip


def _discount_lines(s: DiscountRecommendation) -> list[str]:
    if s.discount_type == "percentage":
        what = f"{s.discount_value:g}% off"
    elif s.discount_type == "fixed":
        what = f"{_money(s.discount_value)} off"
    else:
        what = f"buy one, get {s.discount_value:g} free"
    on = f" {s.item}" if s.item else ""
    return [f"{what}{on} for {s.target_audience}: {s.timing}", f"why: {s.reasoning}"]
