"""``run --models`` on a schema of the kinds real applications have (issue 30): the
school in ``tests/applications/school_models.py`` (joined and single-table inheritance,
an association object with a composite key, a composite foreign key, a tree, a viewonly
custom join, a many-to-one onto a unique column, a collection of a polymorphic class),
generated, measured and verified on every server, sync and async."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from sqla_bench.scenarios.dataset import DatasetSize
from tests.helpers import assert_one_line_error, run

pytestmark = pytest.mark.harness

APPLICATION = Path(__file__).parent / "applications"
QUICK = (
    "--min-time", "0", "--min-rounds", "2", "--warmup", "1", "--min-blocks", "1",
    "--block-time", "0",
)  # fmt: skip
RELATIONSHIPS = {
    "Course.teacher": "many-to-one",  # to a joined-inheritance subclass
    "Course.department": "many-to-one",  # onto a unique column, not the key
    "Course.lab": "many-to-one",  # to a single-table subclass
    "Course.enrollments": "one-to-many",  # to an association object
    "Course.passed": "one-to-many",  # viewonly, a custom join condition
    "Department.courses": "one-to-many",  # from a unique column
    "Department.people": "one-to-many",  # to a polymorphic class, rows of every subclass
    "Enrollment.student": "many-to-one",  # from a composite key
    "Enrollment.course": "many-to-one",
    "Enrollment.submissions": "one-to-many",  # over a composite foreign key
    "Lab.courses": "one-to-many",  # from a single-table subclass
    "Person.department": "many-to-one",  # from a polymorphic class
    "Student.enrollments": "one-to-many",  # from a joined-inheritance subclass
    "Submission.enrollment": "many-to-one",  # onto a composite key
    "Teacher.courses": "one-to-many",
    "Topic.parent": "many-to-one",  # a tree, upwards
    "Topic.children": "one-to-many",  # a tree, downwards
}
# The two hops through the association object, each a case of its own.
CHAINS = ("Course.enrollments.student", "Student.enrollments.course")
TREE = "Topic.children.depth3"  # the tree, three levels of children read
# The polymorphic collection read whole, per way of loading its subclass rows.
SUBCLASS_TABLES = ("sch_teachers", "sch_students")
POLYMORPHIC = {
    loading: f"Department.people.{loading}"
    for loading in ("subclasses", "selectin_polymorphic", "with_polymorphic")
}


@pytest.fixture
def school(tmp_path: Path) -> Path:
    """A folder holding the school's models and twins, and nothing of sqla-bench's."""
    for name in ("school_models.py", "school_twins.py"):
        shutil.copy(APPLICATION / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def school_database(servers, school, monkeypatch):
    """The school's own tables on PostgreSQL, filled by the test (not by a run of
    sqla-bench: to a run they are the application's), and dropped after."""
    url = servers.target("postgresql").url.render_as_string(hide_password=False)
    monkeypatch.syspath_prepend(str(school))
    from sqla_bench.run.application import Workload

    workload = Workload("school_models", None, existing=False)
    sys.modules.pop("school_models", None)
    plans = workload.generator.plan(DatasetSize(users=40, posts_per_user=3))
    tables = [plan.table for plan in plans]
    engine = create_engine(url)
    with engine.begin() as connection:
        tables[0].metadata.create_all(connection, tables=tables)
        workload.generator.fill(connection, plans)
    try:
        yield url
    finally:
        with engine.begin() as connection:
            tables[0].metadata.drop_all(connection, tables=tables)
        engine.dispose()


def measure(school: Path, *options: str, **env: str):
    out = school / "r.json"
    result = run(
        "sqla_bench", "run", "--models", "school_models", *QUICK, "--output", str(out),
        *options, PYTHONPATH=str(school), **env,
    )  # fmt: skip
    return result, (json.loads(out.read_text()) if out.exists() else None)


def target_options(servers, name: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The options and environment that measure on ``name``: every server's drivers
    on SQLite, one sync and one async driver on a server (the rest is the same SQL)."""
    if name == "sqlite":
        return (), {}
    target = servers.target(name)
    url = target.url.render_as_string(hide_password=False)
    drivers = {"postgresql": ("psycopg2", "asyncpg"), "mysql": ("pymysql", "aiomysql")}[name]
    options = ("--target", name, *(w for d in drivers for w in ("--driver", d)))
    return options, {f"SQLA_BENCH_{name.upper()}_URL": url}


@pytest.mark.slow  # a whole schema measured and verified, sync and async: 99 s on a slow machine
@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mysql"])
def test_every_relationship_kind_is_measured_and_verified(servers, school, name) -> None:
    options, env = target_options(servers, name)
    result, data = measure(school, *options, **env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    models = data["run"]["parameters"]["models"]
    assert models["unhandled"] == [] and "left out" not in result.stdout
    cells = data["cells"]
    expected_cases = [*RELATIONSHIPS, *CHAINS, TREE, *POLYMORPHIC.values()]
    assert {c["case"] for c in cells} == {f"models.{name}" for name in expected_cases}
    assert all(c["matches_expected"] for c in cells), [
        (c["case"], c["differences"]) for c in cells if not c["matches_expected"]
    ]
    by = {(c["case"].removeprefix("models."), c["params"]["strategy"], c["mode"]): c for c in cells}
    for relationship, kind in RELATIONSHIPS.items():
        assert by[relationship, "joined", "sync"]["label"].startswith(kind)
        assert by[relationship, "selectin", "async"]["statements"] == 2
        assert by[relationship, "lazy", "async"]["error"] == "MissingGreenlet"
    # A composite key is loaded with an IN list of tuples; a single-table subclass with
    # its discriminator; a many-to-one onto a unique column through a join, by parent.
    assert "IN ((" in sql(by["Enrollment.submissions", "selectin", "sync"])[1].replace(
        "IN (VALUES (", "IN (("
    )
    assert ".kind IN (" in sql(by["Course.lab", "selectin", "sync"])[1]
    assert " JOIN sch_departments " in sql(by["Course.department", "selectin", "sync"])[1]
    assert by["Course.department", "lazy", "sync"]["statements"] == 1 + 20
    # Through the association object: a lazy load per parent, then one per distinct
    # related row (the session's identity map has the others); selectin a SELECT a hop;
    # nested immediateload raises MissingGreenlet in async code (a SQLAlchemy quirk).
    for chain in CHAINS:
        # selectin fetched the parents, their association rows, then the distinct rows
        # of the other side.
        links = by[chain.rsplit(".", 1)[0], "selectin", "sync"]["rows_fetched"] - 20
        distinct = by[chain, "selectin", "sync"]["rows_fetched"] - 20 - links
        assert 0 < distinct <= links
        assert by[chain, "joined", "sync"]["label"].startswith("association object from ")
        assert by[chain, "lazy", "sync"]["statements"] == 1 + 20 + distinct
        assert by[chain, "selectin", "async"]["statements"] == 3
        assert by[chain, "immediate", "sync"]["statements"] == 1 + 20 + distinct
        assert by[chain, "immediate", "async"]["error"] == "MissingGreenlet"
    # Three levels of the tree: selectin a statement a level (recursion_depth=2), a lazy
    # load one per node read; joinedload has no depth of its own.
    assert by[TREE, "selectin", "sync"]["statements"] == 1 + 3
    assert by[TREE, "lazy", "sync"]["statements"] == by[TREE, "immediate", "async"]["statements"]
    assert by[TREE, "lazy", "sync"]["statements"] > 1 + 20
    assert (TREE, "joined", "sync") not in by and (TREE, "subquery", "async") not in by
    # The tree: a lazy load upwards sends no SELECT for a parent already loaded.
    upwards = by["Topic.parent", "lazy", "sync"]["statements"]
    assert 1 < upwards < 1 + 20 == by["Topic.children", "lazy", "sync"]["statements"]
    assert_polymorphic_loads(by)
    # immediateload of a polymorphic class's relationship falls back to lazy loads when
    # read (SQLAlchemy #13204): the same statements in sync code, MissingGreenlet in async.
    assert by["Person.department", "immediate", "async"]["error"] == "MissingGreenlet"
    assert (
        by["Person.department", "immediate", "sync"]["statements"]
        == (by["Person.department", "lazy", "sync"]["statements"])
    )
    if name == "sqlite":
        assert_reported(school)


def assert_polymorphic_loads(by: dict) -> None:
    """A department's people read whole, with each person's subclass row: one SELECT per
    teacher or student read with no option (MissingGreenlet in async code), one per
    subclass with selectin_polymorphic, none beyond the relationship's with
    with_polymorphic (but for a load one parent at a time, which ignores it)."""
    each, selectin, joined = (POLYMORPHIC[name] for name in POLYMORPHIC)
    own = sum(
        statement["count"]
        for statement in by[each, "selectin", "sync"]["sql"]
        if any(
            f"FROM {table} WHERE" in " ".join(statement["text"].split())
            for table in SUBCLASS_TABLES
        )
    )
    assert own > 0 and by[each, "selectin", "sync"]["statements"] == 2 + own
    assert by[each, "selectin", "async"]["error"] == "MissingGreenlet"
    assert by[each, "awaitable_attrs", "async"]["statements"] == 1 + 20 + own
    for mode in ("sync", "async"):
        assert by[selectin, "selectin", mode]["statements"] == 2 + 2  # teachers, students
        assert by[joined, "selectin", mode]["statements"] == 2
        assert by[joined, "joined", mode]["statements"] == 1
    assert " LEFT OUTER JOIN sch_teachers " in sql(by[joined, "selectin", "sync"])[1]
    assert by[joined, "lazy", "sync"]["statements"] == by[each, "lazy", "sync"]["statements"]


def assert_reported(school: Path) -> None:
    """The report names, per relationship, what to use in sync and in async code, and
    says only the dimensions the schema has (no many-to-many: no links per parent)."""
    reported = run("sqla_bench", "report", str(school / "r.json"), "--out", str(school / "rep"))
    assert reported.returncode == 0, reported.stderr
    text = (school / "rep" / "report.md").read_text()
    mine = text.split("## Your models: what to use for each relationship")[1].split("\n## ")[0]
    rows = [line for line in mine.splitlines() if line.startswith("| ") and " (" in line]
    assert len(rows) == len(RELATIONSHIPS) + len(CHAINS) + 1 + len(POLYMORPHIC)  # + the tree
    assert "links/parent" not in text and "None" not in mine and "Left out" not in mine


def sql(cell: dict) -> list[str]:
    return [" ".join(statement["text"].split()) for statement in cell["sql"]]


def test_a_tree_loaded_whole_needs_no_lazy_load_upwards(school) -> None:
    # 12 topics, all loaded: every parent is in the session already, so reading
    # Topic.parent sends nothing, and async code reads it without MissingGreenlet.
    chosen = ("--relationship", "Topic.parent", "--strategy", "lazy", "--strategy", "selectin")
    result, data = measure(school, *chosen, "--users", "12")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    by = {(c["params"]["strategy"], c["mode"]): c for c in data["cells"]}
    assert by["lazy", "sync"]["statements"] == by["lazy", "async"]["statements"] == 1
    assert by["lazy", "async"]["error"] is None and by["lazy", "async"]["rows"] == 12
    assert by["selectin", "sync"]["statements"] == 2  # selectin asks for the keys anyway


def test_the_generated_data_fits_the_schema(school, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(school))
    from sqla_bench.run.application import Workload

    workload = Workload("school_models", None, existing=False)
    engine = create_engine("sqlite://")
    size = DatasetSize(users=30, posts_per_user=3)
    plans = workload.generator.plan(size)
    tables = {plan.table.name: plan.table for plan in plans}
    with engine.begin() as connection:
        plans[0].table.metadata.create_all(connection, tables=list(tables.values()))
        workload.generator.fill(connection, plans)
        workload.generator.check_counts(connection, plans)
        rows = {name: connection.execute(select(t)).mappings().all() for name, t in tables.items()}
    sys.modules.pop("school_models", None)
    people = {row["id"]: row["kind"] for row in rows["sch_people"]}
    # Each department's three people are one of each class, taken in turn from a place
    # of the department's own (departments sampled at any step hold every class); each
    # subclass table has exactly one row per person of its class.
    in_department = {}
    for row in rows["sch_people"]:
        in_department.setdefault(row["department_id"], []).append(row["kind"])
    assert len(in_department) == 30
    every_class = ["person", "student", "teacher"]
    assert all(sorted(kinds) == every_class for kinds in in_department.values())
    assert len({kinds[0] for kinds in in_department.values()}) == 3
    for table, kind in (("sch_teachers", "teacher"), ("sch_students", "student")):
        assert sorted(row["id"] for row in rows[table]) == sorted(
            key for key, value in people.items() if value == kind
        )
    rooms = {row["id"]: row["kind"] for row in rows["sch_rooms"]}
    assert Counter(rooms.values()) == {"room": 30, "lab": 30}
    courses = rows["sch_courses"]
    assert len(courses) == 30 * 3  # children per department
    assert {rooms[row["lab_id"]] for row in courses} == {"lab"}  # Course.lab goes to labs
    codes = [row["code"] for row in rows["sch_departments"]]
    assert len(set(codes)) == len(codes) == 30
    enrollments = {(row["student_id"], row["course_id"]) for row in rows["sch_enrollments"]}
    assert len(enrollments) == len(rows["sch_enrollments"]) == 90 * 3
    assert {(row["student_id"], row["course_id"]) for row in rows["sch_submissions"]} == enrollments
    # The tree: the first topic at the top, every other under one, 3 children each.
    topics = rows["sch_topics"]
    assert [row["parent_id"] for row in topics].count(None) == 1
    under = Counter(row["parent_id"] for row in topics if row["parent_id"] is not None)
    assert set(under.values()) <= {1, 2, 3} and list(under.values()).count(3) == len(under) - 1
    assert workload.dataset(size) == {"rows_per_table": 30, "children_per_parent": 3}


@pytest.mark.slow  # three data sizes of a whole schema: 24 s on a slow machine
def test_a_fan_out_sweep_runs_on_the_models(school) -> None:
    chosen = ("--relationship", "Course.enrollments", "--relationship", "Topic.children")
    # The dataset options under the names they have on any models.
    result, data = measure(
        school, *chosen, "--rows-per-table", "12", "--children-per-parent", "1,5,20"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    joined = {
        c["dataset"]["children_per_parent"]: c
        for c in data["cells"]
        if c["case"] == "models.Course.enrollments" and c["params"]["strategy"] == "joined"
        and c["mode"] == "sync"
    }  # fmt: skip
    # 12 departments with 1, 5 or 20 courses each: all 12 courses loaded, or 20 of them;
    # each course has as many enrollments as the fan-out (at most one per student: the
    # departments' 12, 60 or 240 people hold enough students, a third of them).
    fetched = {fan_out: cell["rows_fetched"] for fan_out, cell in joined.items()}
    assert fetched == {1: 12 * 1, 5: 20 * 5, 20: 20 * 20}


def test_the_default_rows_per_table_shrink_to_fit_a_deep_fan_out(school, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(school))
    from sqla_bench.run.application import Workload

    workload = Workload("school_models", None, existing=False)
    sys.modules.pop("school_models", None)
    sizes = [DatasetSize(posts_per_user=n) for n in (1, 5, 20)]
    fitted = workload.fit_rows(sizes)
    assert len({size.users for size in fitted}) == 1 and fitted[0].users < 1200
    assert [size.posts_per_user for size in fitted] == [1, 5, 20]
    workload.generator.plan(fitted[-1])  # fits
    with pytest.raises(ValueError, match="sqla-bench seeds at most"):
        workload.generator.plan(DatasetSize(users=fitted[0].users + 1, posts_per_user=20))
    assert "rows per table without a parent" in (workload.fitted or "")
    assert workload.fit_rows(sizes[:1]) == tuple(sizes[:1])  # what fits is left alone


def test_a_mistake_in_the_models_is_the_users_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken_models.py").write_text(
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship\n"
        "class Base(DeclarativeBase):\n    pass\n"
        "class Thing(Base):\n    __tablename__ = 'things'\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
        "    other = relationship('Nowhere')\n"
    )
    result = run("sqla_bench", "run", "--models", "broken_models", PYTHONPATH=str(tmp_path))
    assert_one_line_error(result, "your models do not configure")
    assert "Nowhere" in result.stderr and "internal error" not in result.stderr


def test_another_registry_that_does_not_configure_is_not_the_models_mistake(
    school, monkeypatch
) -> None:
    """A process can hold other mappers than the application's (a test suite's, the
    plugin's users'): only the models' registries are configured, so a broken one
    elsewhere neither fails them nor is blamed on them."""
    from sqlalchemy import Column, Integer
    from sqlalchemy.orm import DeclarativeBase, relationship

    from sqla_bench.run.mappers import load_mappers

    class Elsewhere(DeclarativeBase):
        pass

    class Broken(Elsewhere):
        __tablename__ = "broken_elsewhere"
        id = Column(Integer, primary_key=True)
        other = relationship("Nowhere")

    monkeypatch.syspath_prepend(str(school))
    monkeypatch.delitem(sys.modules, "school_models", raising=False)
    try:
        names = {mapper.class_.__name__ for mapper in load_mappers("school_models")}
        assert {"Course", "Student", "Topic"} <= names and "Broken" not in names
    finally:
        Elsewhere.registry.dispose()  # the next test's process holds no broken mapper
        sys.modules.pop("school_models", None)


def twin_cells(data: dict) -> list[dict]:
    return [cell for cell in data["cells"] if cell["case"] == "school.first_departments"]


@pytest.mark.slow  # a whole schema generated and measured: 15 s on a slow machine
def test_twins_of_the_application_run_on_its_generated_data(school) -> None:
    chosen = ("--relationship", "Course.teacher", "--scenarios", "school_twins")
    result, data = measure(school, *chosen)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    twins = twin_cells(data)
    assert [c["mode"] for c in twins] == ["sync", "async"]
    # Checked against the value read from the data with Core: three departments, each
    # with its two courses (--posts 2).
    assert all(c["matches_expected"] and c["statements"] == 2 and c["rows"] == 3 for c in twins)
    assert {c["case"] for c in data["cells"]} == {
        "models.Course.teacher",
        "school.first_departments",
    }


def test_twins_of_the_application_run_on_its_own_data_read_only(school, school_database) -> None:
    options = ("--target", "postgresql", "--driver", "psycopg2", "--driver", "asyncpg")
    chosen = ("--relationship", "Course.teacher", "--scenarios", "school_twins")
    result, data = measure(
        school, *options, *chosen, "--use-existing-data",
        SQLA_BENCH_POSTGRESQL_URL=school_database,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    twins = twin_cells(data)
    assert len(twins) == 2 and all(c["matches_expected"] for c in twins)
    checksums = data["targets"]["postgresql"]["checksums"]
    assert checksums["before"] == checksums["after"]
    # The twins' tables are checksummed with the relationship's.
    assert {"sch_departments", "sch_courses"} <= set(checksums["before"])


def test_twins_on_tables_the_models_data_does_not_hold_are_refused(school) -> None:
    # Topic is no table of Course.teacher's: generated for it, the twins would read the
    # application's own sch_topics wherever the URL points.
    twins = (school / "school_twins.py").read_text()
    (school / "stray_twins.py").write_text(
        twins.replace("import Course, Department", "import Course, Department, Topic")
    )
    result, _ = measure(school, "--relationship", "Course.teacher", "--scenarios", "stray_twins")
    assert_one_line_error(result, "the --models data does not hold (sch_topics)")
