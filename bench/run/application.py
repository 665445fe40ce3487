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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapper
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import sort_tables

from sqla_bench.base.errors import ConfigError, shown
from sqla_bench.measuring.engines import claim, server_version
from sqla_bench.run.existing_data import checksum, make_read_only
from sqla_bench.run.generate import Generator, TablePlan, key_classes
from sqla_bench.run.mappers import Unhandled, load_mappers
from sqla_bench.scenarios.dataset import MAX_ROWS, DatasetSize
from sqla_bench.scenarios.registry import Case
from sqla_bench.scenarios.relationships import (
    Relationship,
    Sample,
    Shape,
    association_chains,
    polymorphic_loads,
    relationship_cases,
    trees,
)
from sqla_bench.servers import owned
from sqla_bench.servers.targets import Driver, Target

MAX_SAMPLE = 10_000  # parents one load samples: the root query's IN list holds their keys


class Workload:
    """An application's relationships as the run's cases, and the data they load."""

    # What a user can do about a relationship left out, said once after the list.
    next_step = (
        "next step for one left out: write the query it serves as a scenario with a twin, "
        "in a module of your own, and measure it with --scenarios MODULE (docs/howto/"
        "own-scenarios.md)"
    )

    def __init__(self, spec: str, selected: Sequence[str] | None, existing: bool) -> None:
        self.spec, self.existing = spec, existing
        mappers = load_mappers(spec)
        candidates = [Relationship(m, name) for m in mappers for name in _relationship_names(m)]
        reasons = {r: list(r.unhandled()) for r in _chosen(candidates, selected)}
        handled = [r for r, why in reasons.items() if not why]
        links = {
            r.prop.secondary: r.parent.local_table for r in handled if r.prop.secondary is not None
        }
        self.generator = Generator(
            mappers, {t for r in handled for t in r.tables}, links, key_classes(handled)
        )
        # Why each relationship is left out: its own reasons, and (for generated data)
        # every one of its tables the generator cannot fill.
        others = [r for r, why in reasons.items() if why]
        checked = Generator(mappers, {t for r in others for t in r.tables}, links)
        for r in reasons if not existing else ():
            problems = (checked if r in others else self.generator).problems
            reasons[r] += [f"table {t.name}: {problems[t]}" for t in r.tables if t in problems]
        self.unhandled = [Unhandled(r.title, tuple(why)) for r, why in reasons.items() if why]
        self.relationships = [r for r, why in reasons.items() if not why]
        if not self.relationships:
            reasons_said = "; ".join(f"{item.name}: {item.reason}" for item in self.unhandled)
            raise ConfigError(
                f"--models {shown(spec)}: no relationship can be measured ({reasons_said})"
            )
        self._model_tables = {t.name: t for m in mappers for t in m.tables}
        tables = {t for r in self.relationships for t in r.tables}
        self.tables = sort_tables(sorted(tables, key=lambda t: t.name))  # the same each run
        self.current: str | None = None
        self.fitted: str | None = None  # why the rows per table are fewer than the default
        self._engines: dict[str, Engine] = {}
        self._samples: dict[tuple[str, str, int], Sample] = {}
        self._read: dict[tuple[str, Any], Any] = {}  # what declarations read, per target
        self._checksums: dict[str, dict[str, str]] = {}
        self._checksums_after: dict[str, dict[str, str]] = {}
        self._plans: dict[str, list[TablePlan]] = {}
        # The two hops through each association object, as a case of their own.
        self.chains = association_chains(self.relationships)
        self.trees = trees(self.relationships)  # each self-referential collection, deep
        # Each collection of a class whose subclasses have tables of their own, read
        # whole, once per way of loading the subclass rows.
        self.polymorphic = polymorphic_loads(self.relationships)
        shapes = [*self.relationships, *self.chains, *self.trees, *self.polymorphic]
        self._cases = relationship_cases(shapes, self)

    def cases(self) -> list[Case]:
        return list(self._cases)

    def guard(self, engine: Any) -> None:
        """Make a measuring engine read-only, when the data is the application's own."""
        if self.existing:
            make_read_only(engine)

    def fit_rows(self, datasets: Sequence[DatasetSize]) -> tuple[DatasetSize, ...]:
        """The datasets with fewer rows per table without a parent (one number for all,
        so that they differ in fan-out only) where the default would pass the seeding
        bound: a chain of one-to-manys multiplies rows at every level."""
        if self.existing:
            return tuple(datasets)
        fitting = min(self._most_rows_that_fit(size) for size in datasets)
        if fitting in (0, *(size.users for size in datasets)):
            return tuple(datasets)  # nothing to gain, or nothing fits: check() says so
        self.fitted = (
            f"rows per table without a parent: {fitting:,}, the most at which every dataset "
            f"fits sqla-bench's bound of {MAX_ROWS:,} rows (--rows-per-table, or --users, "
            "sets it)"
        )
        return tuple(replace(size, users=fitting) for size in datasets)

    def _most_rows_that_fit(self, size: DatasetSize) -> int:
        low, high = 0, size.users  # low fits (or is 0); the answer is in low..high
        while low < high:
            middle = (low + high + 1) // 2
            try:
                self.generator.plan(replace(size, users=middle))
                low = middle
            except ValueError:
                high = middle - 1
        return low

    def dataset(self, size: DatasetSize) -> dict[str, int]:
        """The data's dimensions, as result files keep them: the options that shaped
        generated data, or none for the application's own."""
        if self.existing:
            return {}
        found = {"rows_per_table": size.users}
        if self._fans_out("one-to-many", "one-to-one") or self._trees:
            found["children_per_parent"] = size.posts_per_user
        if self._fans_out("many-to-many"):
            found["links_per_parent"] = size.tags_per_post
        return found

    def _fans_out(self, *kinds: str) -> bool:
        """Whether a relationship measured is of one of these kinds (a dataset option
        that shapes none of them is no dimension of the run)."""
        return any(r.kind in kinds for r in self.relationships)

    @property
    def _trees(self) -> bool:
        return any(r.shares_tables for r in self.relationships)

    def describe(self, size: DatasetSize) -> str:
        """The data a target holds, in words, for progress lines."""
        if self.existing:
            return f"the data at the URL, read-only, {len(self.relationships)} relationships"
        words = {
            "rows_per_table": f"{size.users} rows per table without a parent",
            "children_per_parent": f"{size.posts_per_user} per parent in a one-to-many",
            "links_per_parent": f"{size.tags_per_post} links in a many-to-many",
        }
        return "generated: " + ", ".join(words[name] for name in self.dataset(size))

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

    def table_names(self) -> list[str]:
        """The tables twins may use on this data (``--scenarios`` with ``--models``): the
        ones generated, or, for existing data, every table the models map."""
        if self.existing:
            return sorted(self._model_tables)
        return self.tables_created()

    def include(self, names: Iterable[str]) -> None:
        """Tables twins read besides the relationships' own: checked present and, for
        existing data, checksummed before and after like them."""
        more = {self._model_tables[name] for name in names if name in self._model_tables}
        if self.existing:
            tables = set(self.tables) | more
            self.tables = sort_tables(sorted(tables, key=lambda t: t.name))

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

    def reader(self, target: str) -> Callable[[Callable[[Any], Any]], Any]:
        """Runs a declaration's query (``scenarios.registry.FromDatabase``) on a
        connection of the workload's own to ``target`` (read-only for existing data),
        once per query and seeding."""

        def read(query: Callable[[Any], Any]) -> Any:
            key = (target, query)
            if key not in self._read:
                with self._engines[target].connect() as connection:
                    self._read[key] = query(connection)
            return self._read[key]

        return read

    def sample(self, relationship: Shape, target: str | None, limit: int) -> Sample | None:
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
        self._read = {k: v for k, v in self._read.items() if k[0] != target}
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
            self.generator.check_counts(connection, plans)

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
            "chains": [s.title for s in (*self.chains, *self.trees, *self.polymorphic)],
            "unhandled": [
                {"name": u.name, "reason": u.reason, "reasons": list(u.reasons)}
                for u in self.unhandled
            ],
        }


def _engine(driver: Driver) -> Engine:
    """A connection at a time to the target, on its sync driver: the workload's own."""
    return create_engine(
        driver.sync_url(), poolclass=NullPool, connect_args=driver.sync_connect_args()
    )


def _relationship_names(mapper: Mapper) -> list[str]:
    """The relationships a class declares: one a subclass inherits is its base's,
    measured there (the same property, the same SQL)."""
    return [prop.key for prop in mapper.relationships if prop.parent is mapper]


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
