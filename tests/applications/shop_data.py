"""The shop's own data, as an application's database holds it (``--use-existing-data``):
written through its models, with customers of no order, one, two or three, some with an
address, orders with a note or none, and labels shared between orders."""

from __future__ import annotations

import datetime
from decimal import Decimal

from shop_models import Address, Base, Customer, Label, Line, Order, Review
from sqlalchemy import Engine
from sqlalchemy.orm import Session


def seed(engine: Engine, customers: int = 30) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    labels = [Label(name=f"label {n}") for n in range(5)]
    with Session(engine) as session:
        for c in range(customers):
            since = datetime.date(2020, 1, 1 + c % 28)
            customer = Customer(email=f"c{c}@shop.test", name=f"customer {c}", since=since)
            if c % 3:
                customer.address = Address(city=f"city {c}")
            customer.reviews = [Review(search=None) for _ in range(c % 2)]
            for o in range(c % 4):
                order = Order(
                    total=Decimal(f"{c * 10 + o}.50"),
                    note=None if o else "first",
                    labels=labels[o : o + 2],
                )
                order.lines = [Line(sku=f"sku-{c}-{o}-{n}", quantity=n + 1) for n in range(o + 1)]
                customer.orders.append(order)
            session.add(customer)
        session.commit()


def drop(engine: Engine) -> None:
    Base.metadata.drop_all(engine)
