"""A small shop's models: an application that is not sqla-bench, for ``run --models``.

Its relationships cover each kind (one-to-many, many-to-one, one-to-one, many-to-many,
a custom join condition, a self-referential one, one onto a class with a composite
primary key), and two that sqla-bench leaves out, with every reason it must give: one
onto a table with a column polyfactory has no value for (for generated data only), and
a dynamic one onto the same table (two reasons).
The tests copy this file into a folder of its own and run sqla-bench from there."""

from __future__ import annotations

import datetime
from decimal import Decimal

from sqlalchemy import Column, ForeignKey, Numeric, String, Table, and_
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, DynamicMapped, Mapped, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    pass


order_labels = Table(
    "shop_order_labels",
    Base.metadata,
    Column("order_id", ForeignKey("shop_orders.id"), primary_key=True),
    Column("label_id", ForeignKey("shop_labels.id"), primary_key=True),
)


class Customer(Base):
    __tablename__ = "shop_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(40))
    since: Mapped[datetime.date]
    orders: Mapped[list[Order]] = relationship(back_populates="customer")
    address: Mapped[Address | None] = relationship(back_populates="customer")
    reviews: Mapped[list[Review]] = relationship()
    review_pages: DynamicMapped[Review] = relationship(viewonly=True)
    big_orders: Mapped[list[Order]] = relationship(
        primaryjoin=lambda: and_(Order.customer_id == Customer.id, Order.total > 100),
        viewonly=True,
    )


class Address(Base):
    __tablename__ = "shop_addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("shop_customers.id"), unique=True)
    city: Mapped[str] = mapped_column(String(40))
    customer: Mapped[Customer] = relationship(back_populates="address")


class Order(Base):
    __tablename__ = "shop_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("shop_customers.id"))
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    note: Mapped[str | None] = mapped_column(String(200))
    customer: Mapped[Customer] = relationship(back_populates="orders")
    lines: Mapped[list[Line]] = relationship(back_populates="order")
    labels: Mapped[list[Label]] = relationship(secondary=order_labels)


class Line(Base):
    __tablename__ = "shop_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("shop_orders.id"))
    sku: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[int]
    # A key to its own table with no relationship: the generator leaves it NULL.
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("shop_lines.id"))
    order: Mapped[Order] = relationship(back_populates="lines")


class Label(Base):
    __tablename__ = "shop_labels"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))


class Employee(Base):
    __tablename__ = "shop_employees"
    id: Mapped[int] = mapped_column(primary_key=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("shop_employees.id"))
    manager: Mapped[Employee | None] = relationship(remote_side=[id])


class Warehouse(Base):
    __tablename__ = "shop_warehouses"
    id: Mapped[int] = mapped_column(primary_key=True)
    stock: Mapped[list[Stock]] = relationship()


class Stock(Base):
    __tablename__ = "shop_stock"
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("shop_warehouses.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(20), primary_key=True)
    quantity: Mapped[int]


class Review(Base):
    __tablename__ = "shop_reviews"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("shop_customers.id"))
    # PostgreSQL's full-text type: no Python type, so polyfactory makes no value for it.
    search: Mapped[str | None] = mapped_column(TSVECTOR)
