"""The school's own twins: a query of its own, on its models and its data, for
``run --models school_models --scenarios school_twins`` (generated data) and with
``--use-existing-data`` (the school's own, read-only)."""

from __future__ import annotations

from school_models import Course, Department
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from sqla_bench.scenarios.registry import FromDatabase, scenario


def first_departments_titles(connection) -> list[tuple[str, list[str]]]:
    """What the twins must return, read with Core: the first three departments' codes
    and their courses' titles, in order."""
    codes = list(connection.scalars(select(Department.code).order_by(Department.id).limit(3)))
    titles = connection.execute(
        select(Course.department_code, Course.title).where(Course.department_code.in_(codes))
    ).all()  # sorted in Python below: the servers' collations order text differently
    return [(code, sorted(title for owner, title in titles if owner == code)) for code in codes]


def _titles(departments) -> list[tuple[str, list[str]]]:
    return [(d.code, sorted(course.title for course in d.courses)) for d in departments]


QUERY = (
    select(Department).order_by(Department.id).limit(3).options(selectinload(Department.courses))
)


@scenario("school.first_departments", statements=2, returns=FromDatabase(first_departments_titles))
def first_departments(session):
    """The first three departments with their courses' titles, loaded with selectin."""
    return _titles(session.scalars(QUERY).all())


@first_departments.twin
async def first_departments_async(session):
    return _titles((await session.scalars(QUERY)).all())
