"""``run --models MODULE[:ATTR]``: an application's relationships, measured and verified.

The models come from the application's module (its declarative base or registry); each
relationship becomes a loading case (``scenarios.relationships``). The data is one of two:

- generated (the default): the relationships' tables are created on the target and
  filled from the models themselves, parents before children. polyfactory's
  SQLAlchemy factory makes each column's value from its type, length and nullability;
  the keys are ours, so that every parent has ``--posts`` children in each one-to-many
  and ``--tags`` links in each many-to-many, and ``--users`` rows stand in each table
  without a parent. The tables are dropped when the target is done.
- existing (``--use-existing-data``): the application's own database, read-only. Every
  connection is made read-only by the server (``SET SESSION ... READ ONLY``), every
  call's session is closed, which rolls back, nothing is created or written, and a
  checksum of every table read is taken before and after: a change fails the target.

A relationship or a table it cannot handle (a composite key the generator cannot fill,
a column type polyfactory has no value for, a custom join condition) is listed with the
reason, and the rest still run.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Engine,
    ForeignKey,
    Integer,
    String,
    Table,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapper, registry
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import UniqueConstraint, sort_tables

from sqla_bench import owned
from sqla_bench.engines import claim, server_version
from sqla_bench.errors import ConfigError, first_line, shown
from sqla_bench.plan import import_application
from sqla_bench.scenarios.dataset import MAX_ROWS, DatasetSize
from sqla_bench.scenarios.registry import Case
from sqla_bench.scenarios.relationships import (
    Relationship,
    Sample,
    relationship_cases,
)
from sqla_bench.targets import Driver, Target

# Statements that make every later transaction of a connection read-only, by dialect.
READ_ONLY = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}
MAX_SAMPLE = 10_000  # parents one load samples: the root query's IN list holds their keys
INSERT_CHUNK = 5_000
SEED = 20261202  # polyfactory's values are the same on every run


@dataclass(frozen=True)
class Unhandled:
    """A relationship the run leaves out, and why."""

    name: str
    reason: str


def load_mappers(spec: str) -> list[Mapper]:
    """The mapped classes of ``MODULE[:ATTR]`` (ATTR a declarative base or a registry;
    without it, every one the module holds), found from the current directory as
    ``python -m`` would; one ConfigError saying what is wrong otherwise."""
    module_name, _, attribute = spec.partition(":")
    module = import_application("--models", module_name)
    if attribute:
        if not hasattr(module, attribute):
            raise ConfigError(f"--models {shown(spec)}: {module_name} has no {attribute!r}")
        values: Iterable[Any] = [getattr(module, attribute)]
    else:
        values = vars(module).values()
    registries = {id(found): found for found in map(_registry_of, values) if found is not None}
    mappers = sorted(
        (mapper for found in registries.values() for mapper in found.mappers),
        key=lambda mapper: mapper.class_.__name__,
    )
    if not mappers:
        raise ConfigError(
            f"--models {shown(spec)}: no mapped class found (give the module of your models, "
            "or MODULE:Base for a declarative base or registry in it)"
        )
    return mappers


def _registry_of(value: Any) -> registry | None:
    if isinstance(value, registry):
        return value
    if isinstance(value, type) and isinstance(getattr(value, "registry", None), registry):
        is_base = issubclass(value, DeclarativeBase) or "registry" in vars(value)
        return value.registry if is_base else None
    return None


# --- generated data -----------------------------------------------------------------------


@dataclass(frozen=True)
class TablePlan:
    """How one table is filled: its rows, and the foreign key they fan out under."""

    table: Table
    rows: int
    fan_out_key: ForeignKey | None = None  # the key whose parent each row belongs to
    fan_out: int = 1


class Generator:
    """Fills an application's tables from its models; a table it cannot fill has a reason."""

    def __init__(
        self,
        mappers: Sequence[Mapper],
        tables: Iterable[Table],
        link_parents: dict[Table, Table] | None = None,
    ) -> None:
        self.mapped = {mapper.local_table: mapper for mapper in mappers}
        # A link table's rows fan out under the side a many-to-many is loaded from.
        self.link_parents = link_parents or {}
        self.tables = sort_tables(sorted(_with_parents(tables), key=lambda t: t.name))
        self.problems: dict[Table, str] = {}
        for table in self.tables:
            problem = self._problem(table)
            if problem is not None:
                self.problems[table] = problem

    def _problem(self, table: Table) -> str | None:
        for key in table.foreign_keys:
            if key.column.table in self.problems:
                return f"it refers to {key.column.table.name}, which cannot be generated"
            if self._backward(key) and not key.parent.nullable:
                return f"a NOT NULL foreign key {key.parent.name} to a table filled after it"
        keys = list(table.primary_key.columns)
        if len(keys) > 1 and any(not column.foreign_keys for column in keys):
            return f"a composite primary key ({', '.join(c.name for c in keys)}) it cannot fill"
        mapper = self.mapped.get(table)
        if mapper is None:
            return _link_table_problem(table)
        for column in _unique_columns(table):
            if not column.foreign_keys and not isinstance(column.type, Integer | String):
                return f"unique column {column.name} of type {column.type}: no unique values"
        try:
            _factory(mapper).process_kwargs()
        except Exception as error:  # polyfactory's refusal, in its words
            return f"polyfactory has no value for it: {first_line(error)}"
        return None

    def plan(self, size: DatasetSize) -> list[TablePlan]:
        """Rows per table for this dataset; ValueError beyond the seeding bound."""
        plans: dict[Table, TablePlan] = {}
        for table in self.tables:
            if table not in self.problems:
                plans[table] = self._table_plan(table, plans, size)
        total = sum(plan.rows for plan in plans.values())
        if total > MAX_ROWS:
            raise ValueError(
                f"generating those models' tables at this dataset size is {total:,} rows; "
                f"sqla-bench seeds at most {MAX_ROWS:,}: fewer --users or --posts"
            )
        return list(plans.values())

    def _backward(self, key: Any) -> bool:
        """Whether a foreign key refers to its own table or one filled after it (a cycle):
        such a key is left NULL."""
        referred, table = key.column.table, key.parent.table
        return referred is table or self.tables.index(referred) > self.tables.index(table)

    def _table_plan(
        self, table: Table, plans: dict[Table, TablePlan], size: DatasetSize
    ) -> TablePlan:
        forward = [key for key in table.foreign_keys if not self._backward(key)]
        parent = self.link_parents.get(table)
        keys = sorted(
            forward, key=lambda k: (k.column.table is not parent, k.parent.nullable, k.parent.name)
        )
        if not keys:
            return TablePlan(table, size.users)
        first = keys[0]
        parents = plans[first.column.table].rows
        if table not in self.mapped:  # a link table: --tags links per parent
            others = plans[keys[1].column.table].rows
            per = min(size.tags_per_post, others)
            return TablePlan(table, parents * per, first, per)
        fan_out = 1 if first.parent in _unique_columns(table) else size.posts_per_user
        return TablePlan(table, parents * fan_out, first, fan_out)

    def fill(self, connection: Any, plans: Sequence[TablePlan]) -> None:
        """Insert every planned row, parents before children."""
        values: dict[Table, dict[str, list[Any]]] = {}
        for plan in plans:
            make = self._row_maker(plan, values)
            rows = [make(index) for index in range(plan.rows)]
            values[plan.table] = {c.key: [row.get(c.key) for row in rows] for c in plan.table.c}
            for start in range(0, len(rows), INSERT_CHUNK):
                connection.execute(plan.table.insert(), rows[start : start + INSERT_CHUNK])

    def _row_maker(self, plan: TablePlan, values: dict) -> Any:
        """A function of a row's number giving the row: polyfactory's values, then the
        keys that place it in the dataset (what they depend on is worked out once)."""
        table = plan.table
        mapper = self.mapped.get(table)
        factory = _factory(mapper) if mapper is not None else None  # from its seed
        unique = [column for column in _unique_columns(table) if not column.foreign_keys]
        keys = list(table.primary_key.columns)
        numbered = keys[0] if len(keys) == 1 and _numbered(keys[0]) else None
        links = {  # each foreign key: the values it refers to, or None (left NULL)
            key: None if self._backward(key) else values[key.column.table][key.column.key]
            for key in table.foreign_keys
        }

        def row(index: int) -> dict[str, Any]:
            made = _generated(mapper, factory) if mapper is not None else {}
            for column in unique:
                made[column.key] = _unique(column, index)
            if numbered is not None:
                made[numbered.key] = index + 1
            for key, referred in links.items():
                if referred is None:
                    made[key.parent.key] = None
                else:
                    where = _parent_index(plan, key, index, len(referred), mapper is None)
                    made[key.parent.key] = referred[where]
            return made

        return row


def _numbered(column: Any) -> bool:
    """A single integer key of a table's own: numbered 1..N, as the database would."""
    return isinstance(column.type, Integer) and not column.foreign_keys


def _parent_index(plan: TablePlan, key: Any, index: int, parents: int, link: bool) -> int:
    """Which row of the referred table a row's foreign key points at: its fan-out
    parent's; a link table's second key the next ``fan_out`` rows from there, distinct
    per parent; any other key in turn."""
    if key is plan.fan_out_key:
        return index // plan.fan_out
    if link:
        return (index // plan.fan_out + index % plan.fan_out) % parents
    return index % parents


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
    referred = {key.column.table for key in table.foreign_keys}
    if len(table.foreign_keys) != 2 or len(referred) != 2:
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
    if len(keys) == 1 and not isinstance(keys[0].type, Integer):
        found.append(keys[0])
    return list(dict.fromkeys(found))


def _unique(column: Any, index: int) -> Any:
    if isinstance(column.type, Integer):
        return index + 1
    length = getattr(column.type, "length", None)
    return f"{index + 1}"[: length or None]


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


def _generated(mapper: Mapper, factory: Any) -> dict[str, Any]:
    """polyfactory's values for one row, by column key (an attribute may be named
    otherwise), but for computed columns, which the database fills."""
    table = mapper.local_table
    row = {}
    for name, value in factory.process_kwargs().items():
        column = mapper.columns.get(name)
        if column is not None and column.table is table and column.computed is None:
            row[column.key] = value
    return row


# --- existing data ------------------------------------------------------------------------


def make_read_only(engine: Any) -> None:
    """Every connection ``engine`` opens refuses writes, by the server's own rule."""
    sync_engine: Engine = getattr(engine, "sync_engine", engine)
    statement = READ_ONLY[sync_engine.dialect.name]

    @event.listens_for(sync_engine, "connect")
    def read_only(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # PostgreSQL keeps a SET only once it is committed


def checksum(connection: Any, tables: Iterable[Table]) -> dict[str, str]:
    """Each table's row count and a hash of its rows in key order."""
    found = {}
    for table in tables:
        order = list(table.primary_key.columns) or list(table.columns)
        digest, rows = hashlib.sha256(), 0
        result = connection.execution_options(stream_results=True).execute(
            select(table).order_by(*order)
        )
        for row in result:
            digest.update(repr(tuple(row)).encode())
            rows += 1
        found[table.name] = f"{rows:,} rows, sha256 {digest.hexdigest()[:16]}"
    return found


# --- the workload -------------------------------------------------------------------------


class Workload:
    """An application's relationships as the run's cases, and the data they load."""

    def __init__(self, spec: str, selected: Sequence[str] | None, existing: bool) -> None:
        self.spec, self.existing = spec, existing
        mappers = load_mappers(spec)
        candidates = [Relationship(m, name) for m in mappers for name in _relationship_names(m)]
        loadable = {r: r.unhandled() for r in _chosen(candidates, selected)}
        handled = [r for r, reason in loadable.items() if reason is None]
        links = {
            r.prop.secondary: r.parent.local_table for r in handled if r.prop.secondary is not None
        }
        self.generator = Generator(mappers, {t for r in handled for t in r.tables}, links)
        # Why each relationship is left out: its own reason, or (for generated data) the
        # first of its tables the generator cannot fill.
        for r in handled if not existing else ():
            loadable[r] = next(
                (
                    f"table {t.name}: {self.generator.problems[t]}"
                    for t in r.tables
                    if t in self.generator.problems
                ),
                None,
            )
        self.unhandled = [Unhandled(r.title, why) for r, why in loadable.items() if why]
        self.relationships = [r for r, why in loadable.items() if why is None]
        if not self.relationships:
            reasons = "; ".join(f"{item.name}: {item.reason}" for item in self.unhandled)
            raise ConfigError(
                f"--models {shown(spec)}: no relationship can be measured ({reasons})"
            )
        tables = {t for r in self.relationships for t in r.tables}
        self.tables = sort_tables(sorted(tables, key=lambda t: t.name))  # the same each run
        self.current: str | None = None
        self._engines: dict[str, Engine] = {}
        self._samples: dict[tuple[str, str, int], Sample] = {}
        self._checksums: dict[str, dict[str, str]] = {}
        self._checksums_after: dict[str, dict[str, str]] = {}
        self._plans: dict[str, list[TablePlan]] = {}
        self._cases = relationship_cases(self.relationships, self)

    def cases(self) -> list[Case]:
        return list(self._cases)

    def guard(self, engine: Any) -> None:
        """Make a measuring engine read-only, when the data is the application's own."""
        if self.existing:
            make_read_only(engine)

    def dataset(self, size: DatasetSize) -> dict[str, int]:
        """The data's dimensions, as result files keep them: the options that shaped
        generated data, or none for the application's own."""
        if self.existing:
            return {}
        return {
            "rows_per_table": size.users,
            "children_per_parent": size.posts_per_user,
            "links_per_parent": size.tags_per_post,
        }

    def describe(self, size: DatasetSize) -> str:
        """The data a target holds, in words, for progress lines."""
        if self.existing:
            return f"the data at the URL, read-only, {len(self.relationships)} relationships"
        return (
            f"generated: {size.users} rows per table without a parent, {size.posts_per_user} "
            f"per parent in a one-to-many, {size.tags_per_post} links in a many-to-many"
        )

    def check(
        self, targets: Sequence[Target], datasets: Sequence[DatasetSize], limits: Iterable[int]
    ) -> None:
        """Refuse, before any work, what the data cannot give."""
        if any(limit > MAX_SAMPLE for limit in limits):
            raise ConfigError(
                f"--param limit: at most {MAX_SAMPLE:,} parents per load with --models"
            )
        if self.existing:
            given = [t for t in targets if str(t.source).startswith("url")]
            if len(given) != 1 or len(targets) != 1:
                raise ConfigError(
                    "--use-existing-data reads the one database you give by URL: one --target, "
                    "postgresql or mysql, with SQLA_BENCH_POSTGRESQL_URL or SQLA_BENCH_MYSQL_URL "
                    "set to it"
                )
        else:
            for size in datasets:
                try:
                    self.generator.plan(size)
                except ValueError as error:
                    raise ConfigError(str(error)) from None
        for target in targets:  # a database given by URL: its tables, before any work
            if isinstance(target, Target) and str(target.source).startswith("url"):
                self._check_tables(target.drivers[0])

    def _check_tables(self, driver: Driver) -> None:
        """The tables must be there to read (existing data); ConfigError otherwise. A
        server that does not answer is the runner's to report. (The tables generated
        data goes into are checked as every table sqla-bench creates: ``RunPlan``.)"""
        if not self.existing:
            return
        engine = _engine(driver)
        try:
            present = set(inspect(engine).get_table_names())
        except SQLAlchemyError:
            return
        finally:
            engine.dispose()
        problem = self._tables_problem(present)
        if problem is not None:
            raise ConfigError(problem)

    def tables_created(self) -> list[str]:
        """The tables generated data goes into (none for existing data)."""
        if self.existing:
            return []
        return [t.name for t in self.generator.tables if t not in self.generator.problems]

    def _tables_problem(self, present: set[str]) -> str | None:
        """Why the database's tables do not suit the existing data: one is missing."""
        missing = [table.name for table in self.tables if table.name not in present]
        if missing:
            return f"--use-existing-data: the database has no table {', '.join(missing)}"
        return None

    def sample(self, relationship: Relationship, target: str | None, limit: int) -> Sample | None:
        target = target or self.current
        engine = self._engines.get(target or "")
        if engine is None:
            return None
        key = (target, relationship.case_id, limit)
        if key not in self._samples:
            with engine.connect() as connection:
                self._samples[key] = relationship.sample(connection, limit)
        return self._samples[key]

    def prepare(
        self, driver: Driver, size: DatasetSize, say: Callable[[str], None] = lambda _: None
    ) -> str:
        """Seed (or, with existing data, check and checksum) the target; its version."""
        target = driver.spec.target
        engine = self._engines.get(target)
        if engine is None:
            engine = _engine(driver)
            if self.existing:
                make_read_only(engine)
            self._engines[target] = engine
        self.current = target
        self._samples = {k: v for k, v in self._samples.items() if k[0] != target}
        if self.existing:
            self._check_existing(engine, target)
        else:
            self._generate(engine, driver, size, say)
        return server_version(engine)

    def _check_existing(self, engine: Engine, target: str) -> None:
        problem = self._tables_problem(set(inspect(engine).get_table_names()))
        if problem is not None:
            raise ConfigError(problem)
        if target not in self._checksums:
            with engine.connect() as connection:
                self._checksums[target] = checksum(connection, self.tables)

    def _generate(
        self, engine: Engine, driver: Driver, size: DatasetSize, say: Callable[[str], None]
    ) -> None:
        plans = self.generator.plan(size)
        tables = [plan.table for plan in plans]
        target = driver.spec.target
        if target not in self._plans:  # the first seeding: the tables become sqla-bench's
            claim(engine, driver, [table.name for table in tables], say)
        with engine.begin() as connection:
            if target in self._plans:
                tables[0].metadata.drop_all(connection, tables=tables)
            tables[0].metadata.create_all(connection, tables=tables)
            self._plans[target] = plans
            self.generator.fill(connection, plans)
            _check_counts(connection, plans)

    def finish(self, target: str) -> str | None:
        """Drop the generated tables, or check the existing data is unchanged; why the
        target failed, when it did."""
        engine = self._engines.pop(target, None)
        if engine is None:
            return None
        try:
            if self.existing:
                with engine.connect() as connection:
                    after = self._checksums_after[target] = checksum(connection, self.tables)
                changed = [n for n, text in after.items() if text != self._checksums[target][n]]
                if changed:
                    return f"the data changed during the run, in {', '.join(changed)}"
                return None
            plans = self._plans.pop(target, [])
            if plans:
                owned.release_on(engine, [plan.table.name for plan in plans])
            return None
        finally:
            engine.dispose()

    def checksums(self, target: str) -> dict[str, dict[str, str]] | None:
        """The existing data's checksums on ``target``, before the run and after it."""
        if target not in self._checksums_after:
            return None
        return {"before": self._checksums[target], "after": self._checksums_after[target]}

    def parameters(self) -> dict[str, Any]:
        """The workload as plain data, for the result file."""
        return {
            "module": self.spec,
            "data": "existing" if self.existing else "generated",
            "relationships": [r.title for r in self.relationships],
            "unhandled": [{"name": u.name, "reason": u.reason} for u in self.unhandled],
        }


def _engine(driver: Driver) -> Engine:
    """A connection at a time to the target, on its sync driver: the workload's own."""
    return create_engine(
        driver.sync_url(), poolclass=NullPool, connect_args=driver.sync_connect_args()
    )


def _relationship_names(mapper: Mapper) -> list[str]:
    return [prop.key for prop in mapper.relationships]


def _chosen(candidates: list[Relationship], selected: Sequence[str] | None) -> list[Relationship]:
    if not selected:
        return candidates
    known = {r.title: r for r in candidates}
    for name in selected:
        if name not in known:
            raise ConfigError(
                f"--relationship {shown(name)}: no such relationship; choose from "
                f"{', '.join(sorted(known))}"
            )
    return [known[name] for name in dict.fromkeys(selected)]


def _check_counts(connection: Any, plans: Sequence[TablePlan]) -> None:
    for plan in plans:
        count = connection.scalar(select(func.count()).select_from(plan.table))
        if count != plan.rows:
            raise RuntimeError(
                f"generating {plan.table.name} gave {count} rows, expected {plan.rows}"
            )
