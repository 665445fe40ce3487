"""A school's models: the relationship kinds real schemas use, for ``run --models``.

Written for the tests and found in no other project: joined-table inheritance (people,
teachers, students), single-table inheritance (rooms and labs), an association object
with columns of its own and a composite primary key (enrollments), a composite foreign
key onto it (submissions), a self-referential adjacency list (topics), a viewonly
relationship with a custom join condition, a many-to-one onto a unique column that is
not the primary key (departments by code), and a collection of a polymorphic class whose
rows are of several subclasses (a department's people: teachers, students and others).
Seventeen relationships in all."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from sqlalchemy import ForeignKey, ForeignKeyConstraint, String, and_
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "sch_people"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(60))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("sch_departments.id"))
    department: Mapped[Department | None] = relationship(back_populates="people")
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": kind,
        "polymorphic_identity": "person",
    }


class Teacher(Person):
    __tablename__ = "sch_teachers"
    id: Mapped[int] = mapped_column(ForeignKey("sch_people.id"), primary_key=True)
    office: Mapped[str] = mapped_column(String(20))
    courses: Mapped[list[Course]] = relationship(back_populates="teacher")
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "teacher"}


class Student(Person):
    __tablename__ = "sch_students"
    id: Mapped[int] = mapped_column(ForeignKey("sch_people.id"), primary_key=True)
    year: Mapped[int]
    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="student")
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "student"}


class Department(Base):
    __tablename__ = "sch_departments"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    courses: Mapped[list[Course]] = relationship(back_populates="department")
    people: Mapped[list[Person]] = relationship(back_populates="department")


class Room(Base):
    __tablename__ = "sch_rooms"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    seats: Mapped[int]
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": kind,
        "polymorphic_identity": "room",
    }


class Lab(Room):
    benches: Mapped[int | None]
    courses: Mapped[list[Course]] = relationship(back_populates="lab")
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "lab"}


class Course(Base):
    __tablename__ = "sch_courses"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("sch_teachers.id"))
    department_code: Mapped[str] = mapped_column(ForeignKey("sch_departments.code"))
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("sch_rooms.id"))
    teacher: Mapped[Teacher] = relationship(back_populates="courses")
    department: Mapped[Department] = relationship(back_populates="courses")
    lab: Mapped[Lab | None] = relationship(back_populates="courses")
    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="course")
    passed: Mapped[list[Enrollment]] = relationship(
        primaryjoin=lambda: and_(Enrollment.course_id == Course.id, Enrollment.grade >= 50),
        viewonly=True,
    )


class Enrollment(Base):
    """An association object: a student in a course, with the grade they got."""

    __tablename__ = "sch_enrollments"
    student_id: Mapped[int] = mapped_column(ForeignKey("sch_students.id"), primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("sch_courses.id"), primary_key=True)
    grade: Mapped[int]
    enrolled_on: Mapped[datetime.date]
    student: Mapped[Student] = relationship(back_populates="enrollments")
    course: Mapped[Course] = relationship(back_populates="enrollments")
    submissions: Mapped[list[Submission]] = relationship(back_populates="enrollment")


class Submission(Base):
    __tablename__ = "sch_submissions"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int]
    course_id: Mapped[int]
    score: Mapped[int]
    enrollment: Mapped[Enrollment] = relationship(back_populates="submissions")
    __table_args__ = (
        ForeignKeyConstraint(
            ["student_id", "course_id"],
            ["sch_enrollments.student_id", "sch_enrollments.course_id"],
        ),
    )


class Topic(Base):
    """A tree of topics, each under its parent."""

    __tablename__ = "sch_topics"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("sch_topics.id"))
    name: Mapped[str] = mapped_column(String(60))
    parent: Mapped[Topic | None] = relationship(back_populates="children", remote_side=[id])
    children: Mapped[list[Topic]] = relationship(back_populates="parent")
