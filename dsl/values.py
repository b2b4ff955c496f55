"""The run-time values of the language's typed literals.

An action's config model declares its arguments with these types (durations are plain
:class:`datetime.timedelta`), so ``discount: 20%`` validates as a :class:`Percentage`
and ``price: $9.99`` as :class:`Money`: a percentage given where money is expected is
caught by the checker, not at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


@dataclass(frozen=True, slots=True, order=True)
class Money:
    amount: Decimal
    currency: str = "USD"

    def __str__(self) -> str:
        # Money reads with cents: $12.50, not $12.5.
        return f"{CURRENCY_SYMBOLS.get(self.currency, self.currency)}{self.amount:.2f}"


@dataclass(frozen=True, slots=True, order=True)
class Percentage:
    value: Decimal

    def __str__(self) -> str:
        return f"{self.value}%"

    def of(self, amount: Decimal) -> Decimal:
        return amount * self.value / 100
