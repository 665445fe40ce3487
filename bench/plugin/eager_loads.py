"""Eager loads never read (``--sqla-unused-eager``): a relationship a query loaded with
it that nothing in the test read, nplusone's other half."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from sqla_bench.plugin.lazy_loads import _call_site, relationship_name


@dataclass
class EagerLoads:
    """The objects a test's queries loaded (with where each query ran) and the
    attributes the test read on them."""

    loaded: list[tuple[Any, str]] = field(default_factory=list)  # (state, call site)
    read: set[tuple[int, str]] = field(default_factory=set)  # (id of the object, key)
    # The objects themselves, held until the check: a test's own are gone once it
    # returns, and an id is only an object's while it lives.
    objects: list[Any] = field(default_factory=list)

    def unused(self) -> Counter[tuple[str, str]]:
        """(relationship, call site of its query): objects whose relationship was loaded
        with them, eagerly, and never read. A lazy load is a read, so what an object
        holds unread was loaded by a loader option or the relationship's own lazy=."""
        found: Counter[tuple[str, str]] = Counter()
        for state, site in self.loaded:
            obj = state.obj()
            if obj is None:
                continue
            for prop in state.mapper.relationships:
                if prop.key in state.dict and (id(obj), prop.key) not in self.read:
                    found[relationship_name(prop), site] += 1
        return found


@contextmanager
def watching_eager_loads(active: bool) -> Iterator[EagerLoads | None]:
    """Every object loaded while the block runs and every attribute read on one (the
    ORM has no event for a read: its attribute descriptor is wrapped for the block)."""
    if not active:
        yield None
        return
    from sqlalchemy import event
    from sqlalchemy.orm import Mapper
    from sqlalchemy.orm.attributes import InstrumentedAttribute

    seen, original = EagerLoads(), InstrumentedAttribute.__get__

    def get(attribute: Any, instance: Any, owner: Any) -> Any:
        if instance is not None:
            seen.read.add((id(instance), attribute.key))
        return original(attribute, instance, owner)

    def loaded(target: Any, _: Any) -> None:
        from sqlalchemy import inspect

        seen.objects.append(target)
        seen.loaded.append((inspect(target), _call_site()))

    InstrumentedAttribute.__get__ = get  # type: ignore[method-assign]
    event.listen(Mapper, "load", loaded)
    try:
        yield seen
    finally:
        event.remove(Mapper, "load", loaded)
        InstrumentedAttribute.__get__ = original  # type: ignore[method-assign]


def check_unused(eager: EagerLoads) -> None:
    unused = eager.unused()
    if unused:
        pytest.fail(
            "\n".join(
                f"{relationship} loaded eagerly for {objects} object{'s' * (objects != 1)} "
                f"by the query at {site} and never read: drop its loader option there "
                "(or the relationship's lazy= setting), it is work for nothing"
                for (relationship, site), objects in unused.items()
            ),
            pytrace=False,
        )
