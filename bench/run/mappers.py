"""An application's mappers (``run --models``): its module imported, its registry
configured, each mapped class found, and what cannot be measured said with its reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapper, registry

from sqla_bench.base.errors import ConfigError, first_line, shown
from sqla_bench.run.application_modules import import_application


@dataclass(frozen=True)
class Unhandled:
    """A relationship the run leaves out, and every reason why."""

    name: str
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


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
    _configure(spec, registries.values())
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


def _configure(spec: str, registries: Iterable[registry]) -> None:
    """Set up the models' mappers now (and those of registries they refer to), so that
    a mistake in them is the user's, said in SQLAlchemy's words, and not an error in the
    middle of a run. Only theirs: another registry in the process (a test suite's, say)
    that does not configure is not their models' mistake."""
    try:
        for found in registries:
            found.configure(cascade=True)
    except SQLAlchemyError as error:
        raise ConfigError(
            f"--models {shown(spec)}: your models do not configure: {first_line(error)}"
        ) from None


def _registry_of(value: Any) -> registry | None:
    if isinstance(value, registry):
        return value
    if isinstance(value, type) and isinstance(getattr(value, "registry", None), registry):
        is_base = issubclass(value, DeclarativeBase) or "registry" in vars(value)
        return value.registry if is_base else None
    return None
