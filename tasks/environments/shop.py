"""`shop`: a generated price-and-stock table that only the tools can read.

A row (tasks.data.synthetic.shop) carries its table in `metadata.catalog`
(`{"fig": {"price": 4, "stock": 7}, ...}`) and its question in `metadata.ask`
(`{"kind": "cost", "items": {"fig": 3}}`); the prompt shows only the question
('Shop 12: cost of 3 "fig"?'), so the answer needs a lookup and a little arithmetic:

    cost  sum of quantity * price over the items (one or two lookups)
    left  stock - quantity of the one item

`expected` computes that from the environment's own table, never from the row's `answer`.
"""

from __future__ import annotations

from typing import Any

from tasks.environments._base import Environment, tool


def shop_answer(catalog: dict, ask: dict) -> int:
    """The right answer to `ask` over `catalog` (KeyError when an item is not in the table)."""
    items = ask["items"]
    if ask["kind"] == "left":
        ((item, qty),) = items.items()
        return int(catalog[item]["stock"]) - int(qty)
    return sum(int(qty) * int(catalog[item]["price"]) for item, qty in items.items())


def shop_reasoning(catalog: dict, ask: dict) -> str:
    """The worked arithmetic of `ask` once the values are known ("3*4=12")."""
    items = ask["items"]
    if ask["kind"] == "left":
        ((item, qty),) = items.items()
        return f"{catalog[item]['stock']}-{qty}={shop_answer(catalog, ask)}"
    parts = [(qty, catalog[item]["price"]) for item, qty in items.items()]
    steps = [f"{q}*{p}={q * p}" for q, p in parts]
    if len(parts) > 1:
        steps.append("+".join(str(q * p) for q, p in parts) + f"={shop_answer(catalog, ask)}")
    return "\n".join(steps)


def shop_calls(ask: dict) -> list[dict]:
    """The tool calls that answer `ask`: one lookup per item."""
    fn = "stock" if ask["kind"] == "left" else "price"
    return [{"name": fn, "arguments": {"item": item}} for item in ask["items"]]


class ShopEnvironment(Environment):
    """A shop's table of prices and stock, read with `price(item)` and `stock(item)`.

    State: the row's `catalog` and `ask` columns. Expected answer: `shop_answer(catalog, ask)`.
    Budget: `max_calls` tool calls (default 4) and `max_seconds` (5 s) per rollout."""

    name = "shop"
    FAMILIES = ("shop",)
    COLUMNS = ("catalog", "ask")

    def _start(self, row: dict) -> None:
        catalog, ask = row.get("catalog"), row.get("ask")
        if not isinstance(catalog, dict) or not isinstance(ask, dict):
            raise ValueError(f"shop needs the row's catalog and ask columns, got {catalog!r} and {ask!r}")
        self.catalog, self.ask = catalog, ask

    @property
    def expected(self) -> Any:
        return shop_answer(self.catalog, self.ask)

    def _entry(self, item: str) -> dict:
        if item not in self.catalog:
            raise KeyError(f"no item {item!r} in this shop")
        return self.catalog[item]

    @tool
    def price(self, item: str) -> int:
        """The unit price of an item in this shop.

        Args:
            item: the item's name, as the question spells it
        """
        return int(self._entry(item)["price"])

    @tool
    def stock(self, item: str) -> int:
        """How many of an item this shop has in stock.

        Args:
            item: the item's name, as the question spells it
        """
        return int(self._entry(item)["stock"])
