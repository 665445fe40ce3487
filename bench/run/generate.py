"""Generated data for ``run --models``: an application's tables filled from its models.

polyfactory's SQLAlchemy factory makes each column's value from its type, length and
nullability; the keys are ours, so that the data has the shape the options name:

- a table no foreign key places under another holds ``rows_per_table`` rows (``--users``),
  each class of an inheritance hierarchy as many, its rows taking the classes in turn
  with the discriminator each class declares;
- a one-to-many's child table holds ``children_per_parent`` rows (``--posts``) per parent,
  each parent's taking the classes of a hierarchy in turn from a place of its own;
  a table whose key is its foreign key (a joined-inheritance subclass, a one-to-one's
  extension) exactly one per parent row of its class;
- a many-to-many's link table holds ``links_per_parent`` links (``--tags``) per row of the
  side it is loaded from;
- a self-referential key makes a tree: each row under the row ``children_per_parent``
  places it under, the first row at the top;
- a composite foreign key refers to one row, all its columns together; a key onto a
  subclass's rows (a relationship to ``Lab`` over a key into ``rooms``) refers to rows of
  that class only; primary-key and unique columns are numbered, so they stay unique.

A table it cannot fill (a column type polyfactory has no value for, a unique column of a
type it cannot number) has a reason, and what needs it is left out with it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Integer, String, Table, func, select
from sqlalchemy.orm import ColumnProperty, Mapper
from sqlalchemy.schema import UniqueConstraint, sort_tables

from sqla_bench.base.errors import first_line
from sqla_bench.scenarios.dataset import MAX_ROWS, DatasetSize

INSERT_CHUNK = 5_000
# polyfactory's rows per class, used in turn: a row takes 0.1 ms to make, so a table of a
# million rows would take minutes; the keys, which give the data its shape, are ours.
VALUE_POOL = 1_000
SEED = 20261202  # polyfactory's values are the same on every run
TREE = object()  # a key onto its own table's rows


@dataclass(frozen=True)
class TablePlan:
    """How one table is filled: its rows, and the foreign key they fan out under."""

    table: Table
    rows: int
    fan_out_key: ForeignKeyConstraint | None = None  # the key whose parent each row is under
    fan_out: int = 1
    # A hierarchy's table: the class of each row, as positions in the generator's list
    # of that hierarchy's classes; a subclass's table: which of its parent's rows it extends.
    classes: list[int] | None = field(default=None, repr=False, compare=False)
    parent_rows: list[int] | None = field(default=None, repr=False, compare=False)
    branching: int = 1  # a tree over the table's own rows: children per row


class Generator:
    """Fills an application's tables from its models; a table it cannot fill has a reason."""

    def __init__(
        self,
        mappers: Sequence[Mapper],
        tables: Iterable[Table],
        link_parents: dict[Table, Table] | None = None,
        key_classes: dict[ForeignKeyConstraint, Mapper] | None = None,
    ) -> None:
        self.mapped: dict[Table, Mapper] = {}
        for mapper in sorted(mappers, key=lambda m: len(list(m.iterate_to_root()))):
            self.mapped.setdefault(mapper.local_table, mapper)  # a hierarchy's: its root's
        self.hierarchy = {table: _classes_of(mapper) for table, mapper in self.mapped.items()}
        # A link table's rows fan out under the side a many-to-many is loaded from.
        self.link_parents = link_parents or {}
        # A key whose relationship goes to a subclass: it refers to that class's rows only.
        self.key_classes = key_classes or {}
        self.tables = sort_tables(sorted(_with_parents(tables), key=lambda t: t.name))
        self.problems: dict[Table, str] = {}
        for table in self.tables:
            problem = self._problem(table)
            if problem is not None:
                self.problems[table] = problem

    # --- what can be filled -------------------------------------------------------------

    def _problem(self, table: Table) -> str | None:
        for key in table.foreign_key_constraints:
            if key.referred_table in self.problems:
                return f"it refers to {key.referred_table.name}, which cannot be generated"
            if self._backward(key) and not _nullable(key):
                return f"a NOT NULL foreign key {_names(key)} to a table filled after it"
        for column in self._numbered_columns(table):
            if not isinstance(column.type, Integer | String):
                return f"key or unique column {column.name} of type {column.type}: no unique values"
        mapper = self.mapped.get(table)
        if mapper is None:
            return _link_table_problem(table)
        for each in self.hierarchy[table]:
            try:
                _factory(each).process_kwargs()
            except Exception as error:  # polyfactory's refusal, in its words
                return f"polyfactory has no value for it: {first_line(error)}"
        return None

    def _numbered_columns(self, table: Table) -> list[Any]:
        """Columns the generator numbers so that they stay unique: the key's own columns
        and unique ones (foreign-key columns take their parents' values instead)."""
        keys = [c for c in table.primary_key.columns if not c.foreign_keys]
        return list(dict.fromkeys(keys + [c for c in _unique_columns(table) if not c.foreign_keys]))

    # --- how many rows ------------------------------------------------------------------

    def plan(self, size: DatasetSize) -> list[TablePlan]:
        """Rows per table for this dataset; ValueError beyond the seeding bound."""
        plans: dict[Table, TablePlan] = {}
        for table in self.tables:
            if table not in self.problems:
                plan = self._table_plan(table, plans, size)
                if any(k.referred_table is table for k in table.foreign_key_constraints):
                    plan = replace(plan, branching=size.posts_per_user)
                plans[table] = plan
        total = sum(plan.rows for plan in plans.values())
        if total > MAX_ROWS:
            largest = max(plans.values(), key=lambda plan: plan.rows)
            raise ValueError(
                f"generating those models' tables at this dataset size is {total:,} rows "
                f"({largest.table.name}: {largest.rows:,}); sqla-bench seeds at most "
                f"{MAX_ROWS:,}: fewer --users (rows per table without a parent) or --posts "
                "(children per parent)"
            )
        for plan in plans.values():
            self._check_numbering(plan)
        return list(plans.values())

    def _check_numbering(self, plan: TablePlan) -> None:
        for column in self._numbered_columns(plan.table):
            length = getattr(column.type, "length", None)
            if isinstance(column.type, String) and length and len(str(plan.rows)) > length:
                raise ValueError(
                    f"{plan.table.name}.{column.name} is {column.type}: {plan.rows:,} distinct "
                    "values do not fit in it; fewer --users or --posts"
                )

    def _backward(self, key: ForeignKeyConstraint) -> bool:
        """Whether a key refers to a table filled after its own (a cycle): left NULL."""
        return self.tables.index(key.referred_table) > self.tables.index(key.table)

    def _table_plan(
        self, table: Table, plans: dict[Table, TablePlan], size: DatasetSize
    ) -> TablePlan:
        forward = [
            key
            for key in table.foreign_key_constraints
            if key.referred_table is not table and not self._backward(key)
        ]
        parent = self.link_parents.get(table)
        keys = sorted(
            forward,
            key=lambda k: (k.referred_table is not parent, _nullable(k), _names(k)),
        )
        if not keys:
            return self._classed(table, size.users * len(self.hierarchy.get(table, [None])))
        first = keys[0]
        parents = plans[first.referred_table]
        if table not in self.mapped:  # a link table: --tags links per parent
            per = min(size.tags_per_post, plans[keys[1].referred_table].rows)
            return TablePlan(table, parents.rows * per, first, per)
        if self._extends(table, first):  # one row per parent row of its class
            rows = self._rows_of_class(parents, self.mapped[table], plans)
            return TablePlan(table, len(rows), first, 1, parent_rows=rows)
        fan_out = 1 if _one_per_parent(table, first) else size.posts_per_user
        for other in keys[1:]:  # a key column that is part of the key: distinct per parent
            if set(other.columns) <= set(table.primary_key.columns):
                fan_out = min(fan_out, plans[other.referred_table].rows)
        return self._classed(table, parents.rows * fan_out, first, fan_out)

    def _classed(self, table: Table, rows: int, key: Any = None, fan_out: int = 1) -> TablePlan:
        classes = len(self.hierarchy.get(table, []))
        if classes < 2:
            return TablePlan(table, rows, key, fan_out)
        if key is None:
            turns = [index % classes for index in range(rows)]
        else:
            # Each parent's rows take the classes in turn from a place of the parent's
            # own: from the same place (the parent's number, say) parents sampled at a
            # step that is a multiple of the classes would all hold the same ones.
            turns = [
                (index % fan_out + _scattered(index // fan_out)) % classes for index in range(rows)
            ]
        return TablePlan(table, rows, key, fan_out, classes=turns)

    def _extends(self, table: Table, key: ForeignKeyConstraint) -> bool:
        """Whether a table's rows extend its parent's: a subclass's table in joined
        inheritance, whose key is the key onto its parent class's table."""
        mapper = self.mapped.get(table)
        return (
            mapper is not None
            and mapper.inherits is not None
            and key.referred_table in self.hierarchy
            and set(key.columns) == set(table.primary_key.columns)
        )

    def _rows_of_class(
        self, plan: TablePlan, mapper: Mapper, plans: dict[Table, TablePlan]
    ) -> list[int]:
        """Which of a hierarchy table's rows are of ``mapper``'s class or a subclass."""
        classes = self._classes_of_rows(plan, plans)
        wanted = {id(m) for m in mapper.self_and_descendants}
        positions = {i for i, m in enumerate(self._hierarchy_of(plan.table)) if id(m) in wanted}
        return [row for row, position in enumerate(classes) if position in positions]

    def _classes_of_rows(self, plan: TablePlan, plans: dict[Table, TablePlan]) -> list[int]:
        """The class of each of a table's rows, as a position in its hierarchy's list."""
        if plan.classes is not None:
            return plan.classes
        if plan.parent_rows is not None and plan.fan_out_key is not None:
            above = self._classes_of_rows(plans[plan.fan_out_key.referred_table], plans)
            return [above[row] for row in plan.parent_rows]
        return [0] * plan.rows

    def _hierarchy_of(self, table: Table) -> list[Mapper]:
        """The classes of a hierarchy that table's rows are numbered in: its root's."""
        mapper = self.mapped[table]
        return self.hierarchy[mapper.base_mapper.local_table]

    # --- the rows -----------------------------------------------------------------------

    def fill(self, connection: Any, plans: Sequence[TablePlan]) -> None:
        """Insert every planned row, parents before children."""
        by_table = {plan.table: plan for plan in plans}
        values: dict[Table, dict[str, list[Any]]] = {}
        for plan in plans:
            rows = self._rows(plan, values, by_table)
            values[plan.table] = {c.key: [row.get(c.key) for row in rows] for c in plan.table.c}
            for start in range(0, len(rows), INSERT_CHUNK):
                connection.execute(plan.table.insert(), rows[start : start + INSERT_CHUNK])

    def _rows(
        self, plan: TablePlan, values: dict, plans: dict[Table, TablePlan]
    ) -> list[dict[str, Any]]:
        table = plan.table
        mapper = self.mapped.get(table)
        classes = self._hierarchy_of(table) if mapper is not None else []
        made_by = [_values(each, table, min(plan.rows, VALUE_POOL)) for each in classes]
        of_row = self._classes_of_rows(plan, plans) if mapper is not None else []
        discriminator = _discriminator(mapper, table)
        numbered = self._numbered_columns(table)
        keys = self._referred(plan, values, plans)
        rows: list[dict[str, Any]] = []
        for index in range(plan.rows):
            row: dict[str, Any] = {}
            if mapper is not None:
                position = of_row[index]
                pool = made_by[position]
                row = dict(pool[index % len(pool)])
                if discriminator is not None:
                    row[discriminator.key] = classes[position].polymorphic_identity
            for column in numbered:
                row[column.key] = _unique(column, index)
            for key, referred in keys.items():
                if referred is TREE:
                    _set_key(row, key, _tree_parent(plan, key, index, rows, row))
                else:
                    _set_key(row, key, self._parent_row(plan, key, index, referred))
            rows.append(row)
        return rows

    def _referred(
        self, plan: TablePlan, values: dict, plans: dict[Table, TablePlan]
    ) -> dict[ForeignKeyConstraint, Any]:
        """Each key's candidate parents: the referred rows' key values (``None``: the key
        is left NULL; ``TREE``: the table's own rows)."""
        found: dict[ForeignKeyConstraint, Any] = {}
        for key in plan.table.foreign_key_constraints:
            if key.referred_table is plan.table:
                found[key] = TREE
            elif self._backward(key):
                found[key] = None
            else:
                columns = [element.column.key for element in key.elements]
                table_values = values[key.referred_table]
                rows = list(zip(*(table_values[name] for name in columns), strict=True))
                found[key] = self._of_class(key, rows, plans)
        return found

    def _of_class(
        self, key: ForeignKeyConstraint, rows: list[tuple], plans: dict[Table, TablePlan]
    ) -> list[tuple]:
        """The referred rows a key may point at: a subclass's only, when its relationship
        goes to one."""
        mapper = self.key_classes.get(key)
        if mapper is None:
            return rows
        wanted = set(self._rows_of_class(plans[key.referred_table], mapper, plans))
        return [row for index, row in enumerate(rows) if index in wanted]

    def _parent_row(
        self, plan: TablePlan, key: ForeignKeyConstraint, index: int, referred: list | None
    ) -> tuple | None:
        """The values a row's key takes: its fan-out parent's; a link table's second key
        the next ``fan_out`` rows from there, distinct per parent; any other key its
        parents in turn."""
        if not referred:
            return None
        if key is plan.fan_out_key:
            if plan.parent_rows is not None:
                return referred[plan.parent_rows[index]]
            return referred[index // plan.fan_out]
        if plan.table not in self.mapped:  # a link table's second key
            return referred[(index // plan.fan_out + index % plan.fan_out) % len(referred)]
        return referred[index % len(referred)]

    def check_counts(self, connection: Any, plans: Sequence[TablePlan]) -> None:
        """Every table holds the rows planned for it."""
        for plan in plans:
            count = connection.scalar(select(func.count()).select_from(plan.table))
            if count != plan.rows:
                raise RuntimeError(
                    f"generating {plan.table.name} gave {count} rows, expected {plan.rows}"
                )


def _scattered(number: int) -> int:
    """A number that follows from ``number`` and from no pattern in it."""
    return zlib.crc32(number.to_bytes(8, "little"))


def _tree_parent(
    plan: TablePlan, key: ForeignKeyConstraint, index: int, made: list, row: dict
) -> tuple | None:
    """A tree's parent of row ``index``: each row has ``branching`` children, in order
    (row 0 has rows 1..b); the first row is the top, under none (or, when the key is NOT
    NULL, under itself)."""
    top = made[(index - 1) // plan.branching] if index else None if _nullable(key) else row
    return None if top is None else tuple(top[e.column.key] for e in key.elements)


def key_classes(relationships: Iterable[Any]) -> dict[ForeignKeyConstraint, Mapper]:
    """For each relationship between a key and a subclass's rows, that key and class: its
    rows must refer to rows of that class (a lab's courses to labs, not to every room)."""
    found = {}
    for relationship in relationships:
        prop = relationship.prop
        if prop.secondary is not None:
            continue
        many_to_one = prop.direction.name == "MANYTOONE"
        one = prop.mapper if many_to_one else prop.parent
        if one.inherits is None:
            continue
        columns = {local if many_to_one else remote for local, remote in prop.local_remote_pairs}
        table = next(iter(columns)).table
        for key in table.foreign_key_constraints:
            if set(key.columns) == columns:
                found[key] = one
    return found


def _classes_of(mapper: Mapper) -> list[Mapper]:
    """The classes whose rows a hierarchy's root table holds, depth first (a subclass's
    own table then holds a run of them), each with a discriminator value."""
    if mapper.polymorphic_on is None:
        return [mapper]
    ordered: list[Mapper] = []

    def visit(node: Mapper) -> None:
        if node.polymorphic_identity is not None:
            ordered.append(node)
        for child in sorted(
            (m for m in node.self_and_descendants if m.inherits is node),
            key=lambda m: m.class_.__name__,
        ):
            visit(child)

    visit(mapper)
    return ordered or [mapper]


def _discriminator(mapper: Mapper | None, table: Table) -> Any:
    """The column that says a row's class, when it is in this table."""
    column = mapper.polymorphic_on if mapper is not None else None
    return column if column is not None and column.table is table else None


def _set_key(row: dict[str, Any], key: ForeignKeyConstraint, values: tuple | None) -> None:
    for index, column in enumerate(key.columns):
        row[column.key] = None if values is None else values[index]


def _nullable(key: ForeignKeyConstraint) -> bool:
    return all(column.nullable for column in key.columns)


def _names(key: ForeignKeyConstraint) -> str:
    return ", ".join(column.name for column in key.columns)


def _one_per_parent(table: Table, key: ForeignKeyConstraint) -> bool:
    """A key that is the table's primary key, or unique: one row per parent."""
    columns = set(key.columns)
    if columns == set(table.primary_key.columns):
        return True
    if len(columns) == 1 and next(iter(columns)) in _unique_columns(table):
        return True
    return any(
        isinstance(constraint, UniqueConstraint) and set(constraint.columns) == columns
        for constraint in table.constraints
    )


def _with_parents(tables: Iterable[Table]) -> list[Table]:
    """The tables and every table their foreign keys need, for the constraints to hold."""
    found: dict[Table, None] = {}
    pending = list(tables)
    while pending:
        table = pending.pop()
        if table not in found:
            found[table] = None
            pending += [key.column.table for key in table.foreign_keys]
    return list(found)


def _link_table_problem(table: Table) -> str | None:
    referred = {key.referred_table for key in table.foreign_key_constraints}
    if len(table.foreign_key_constraints) != 2 or len(referred) != 2:
        return "a table without a mapped class that is not a two-way link table"
    required = [
        column.name
        for column in table.columns
        if not column.foreign_keys and not column.nullable and column.default is None
        and column.server_default is None
    ]  # fmt: skip
    return f"a link table with required columns {', '.join(required)}" if required else None


def _unique_columns(table: Table) -> list[Any]:
    """Columns that must hold distinct values on their own (a one-column key or index)."""
    found = [column for column in table.columns if column.unique]
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1:
            found += list(constraint.columns)
    for index in table.indexes:
        if index.unique and len(index.columns) == 1:
            found += list(index.columns)
    keys = list(table.primary_key.columns)
    if len(keys) == 1:
        found.append(keys[0])
    return list(dict.fromkeys(found))


def _unique(column: Any, index: int) -> Any:
    if isinstance(column.type, Integer):
        return index + 1
    return f"{index + 1}"


def _factory(mapper: Mapper) -> Any:
    """polyfactory's factory for a mapped class: column values only, seeded per class."""
    from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory

    factory = type(
        f"{mapper.class_.__name__}Factory",
        (SQLAlchemyFactory,),
        {
            "__model__": mapper.class_,
            "__check_model__": False,
            "__set_foreign_keys__": False,
            "__set_relationships__": False,
            "__set_association_proxy__": False,
        },
    )
    factory.seed_random(SEED + zlib.crc32(mapper.class_.__name__.encode()))
    return factory


def _values(mapper: Mapper, table: Table, rows: int) -> list[dict[str, Any]]:
    """``rows`` of polyfactory's values for a class's columns in ``table`` (at least one)."""
    factory = _factory(mapper)  # from its own seed: the same values on every run
    return [_generated(mapper, factory, table) for _ in range(max(rows, 1))]


def _generated(mapper: Mapper, factory: Any, table: Table) -> dict[str, Any]:
    """polyfactory's values for the columns ``table`` holds of one row, by column key (an
    attribute may be named otherwise), but for computed columns, which the database fills."""
    row = {}
    for name, value in factory.process_kwargs().items():
        attribute = mapper.attrs.get(name)
        if not isinstance(attribute, ColumnProperty):
            continue
        for column in attribute.columns:
            if getattr(column, "table", None) is table and column.computed is None:
                row[column.key] = value
    return row
