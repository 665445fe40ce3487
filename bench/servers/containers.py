"""Database servers in containers, started through testcontainers.

A server target without a URL gets a container when a Docker engine answers: the image
and the server options are settings, each container is labelled with the process that
owns it, and it is removed when that process is done with it. testcontainers' reaper
(Ryuk) runs from a registry image that machines without a registry cannot pull, so it is
off unless ``TESTCONTAINERS_RYUK_DISABLED`` says otherwise; the labels let
``sqla-bench containers --prune`` find what a killed run left behind.

Errors are ``ContainerError`` with one line that never contains a password.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.engine import URL

from sqla_bench.base.errors import first_line
from sqla_bench.base.owner import owner_alive, owner_label

# Set before testcontainers reads its configuration (it does at import).
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

IMAGE_VARIABLES = {"postgresql": "SQLA_BENCH_POSTGRESQL_IMAGE", "mysql": "SQLA_BENCH_MYSQL_IMAGE"}
OPTIONS_VARIABLES = {
    "postgresql": "SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS",
    "mysql": "SQLA_BENCH_MYSQL_SERVER_OPTIONS",
}
# The official images a user with a registry gets without configuring anything.
DEFAULT_IMAGES = {"postgresql": "postgres:18", "mysql": "mariadb:11.8"}
# Each server's default port: inside its container, and for a URL that names none.
PORTS = {"postgresql": 5432, "mysql": 3306}
USER = DATABASE = "sqla_bench"
DOCKER_TIMEOUT_SECONDS = 5
LABEL = "org.sqla-bench"  # "true" on every container sqla-bench starts
TARGET_LABEL = "org.sqla-bench.target"
OWNER_LABEL = (
    "org.sqla-sqla_bench.base.owner"  # "host:pid:process start time" of the owning process
)

OPTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(\S+)$")


class ContainerError(Exception):
    """A container could not be provided; the message is one line, without passwords."""


@dataclass(frozen=True)
class ServerSettings:
    """What container to start for a target: the image and the server's options."""

    target: str
    image: str
    options: tuple[tuple[str, str], ...] = ()

    def command(self) -> list[str]:
        """The container's arguments: the official images pass them to the server."""
        if self.target == "postgresql":
            return [arg for name, value in self.options for arg in ("-c", f"{name}={value}")]
        return [f"--{name}={value}" for name, value in self.options]

    def describe(self) -> dict:
        """For result files: where the server came from."""
        return {"image": self.image, "server_options": dict(self.options)}


def server_settings(target: str, environ: Mapping[str, str] = os.environ) -> ServerSettings:
    """The image and options for ``target``'s container, from the environment."""
    image = environ.get(IMAGE_VARIABLES[target], "").strip() or DEFAULT_IMAGES[target]
    variable = OPTIONS_VARIABLES[target]
    options = []
    for item in environ.get(variable, "").replace(",", " ").split():
        match = OPTION.match(item)
        if match is None:
            raise ContainerError(
                f"{variable}: {item!r} is not name=value (e.g. {_example(target)})"
            )
        options.append((match[1], match[2]))
    return ServerSettings(target, image, tuple(options))


def _example(target: str) -> str:
    return "fsync=off,max_connections=200" if target == "postgresql" else "max-connections=500"


def docker_client():
    """A client for the Docker engine the environment names, or ContainerError."""
    import docker  # imported here: commands that never touch Docker do not pay for it
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_SECONDS)
        client.ping()
    except (DockerException, OSError):
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise ContainerError(f"no Docker engine answers at {where}") from None
    return client


def docker_problem() -> str | None:
    """Why no container can be started here, or None when a Docker engine answers."""
    try:
        docker_client().close()
    except ContainerError as error:
        return str(error)
    return None


def _first_line(error: BaseException, *secrets_: str) -> str:
    text = first_line(error)
    for secret in secrets_:
        text = text.replace(secret, "***")
    return text


class ServerContainer:
    """One database server in a container owned by this process."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.password = secrets.token_hex(16)
        self.ready_seconds: float | None = None  # from start to accepting connections
        self._container = None

    def start(self) -> URL:
        """Start the container and wait until the server accepts connections."""
        container = self._build()
        started = time.perf_counter()
        try:
            container.start()
        except Exception as error:
            reason = self._why_not_started(container, error)
            self._container = container
            self.stop()
            raise ContainerError(reason) from None
        except BaseException:  # Ctrl-C or SIGTERM while it starts: it goes with us
            self._container = container
            self.stop()
            raise
        self._container = container
        self.ready_seconds = time.perf_counter() - started
        return URL.create(
            self.settings.target,
            username=USER,
            password=self.password,
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(PORTS[self.settings.target])),
            database=DATABASE,
        )

    def stop(self) -> None:
        """Remove the container; safe to call twice or after a failed start."""
        container, self._container = self._container, None
        if container is None:
            return
        # Already gone, or the engine went away: either way nothing is left to stop.
        with contextlib.suppress(Exception):
            container.stop()

    def _build(self):
        from testcontainers.community.mysql import MySqlContainer
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        settings = self.settings
        labels = {LABEL: "true", TARGET_LABEL: settings.target, OWNER_LABEL: owner_label()}
        if settings.target == "postgresql":
            container = PostgresContainer(
                settings.image,
                username=USER,
                password=self.password,
                dbname=DATABASE,
                driver=None,
                labels=labels,
            )
            # PostgresContainer's own check retries psql until its time-out even when the
            # server has exited (a bad option): waiting for the log line first fails fast.
            container.waiting_for(LogMessageWaitStrategy("ready to accept connections"))
        else:
            container = MySqlContainer(
                settings.image,
                username=USER,
                password=self.password,
                root_password=secrets.token_hex(16),
                dbname=DATABASE,
                labels=labels,
            )
        return container.with_command(settings.command())

    def _why_not_started(self, container, error: Exception) -> str:
        what = f"cannot start a {self.settings.target} container from {self.settings.image}"
        detail = _first_line(error, self.password)
        if container._container is None and not _image_is_here(self.settings.image):
            return (
                f"{what}: the image is not here and pulling it failed ({detail}); pull or "
                f"build it, or set {IMAGE_VARIABLES[self.settings.target]} to one that is here"
            )
        return f"{what}: {self._last_log_line(container) or detail}"

    def _last_log_line(self, container) -> str:
        """The server's last words, which say why it stopped (a bad option, say)."""
        try:
            stdout, stderr = container.get_logs()
        except Exception:
            return ""
        lines = (stdout + stderr).decode(errors="replace").strip().splitlines()
        return lines[-1].replace(self.password, "***") if lines else ""


def _image_is_here(image: str) -> bool:
    from docker.errors import DockerException

    try:
        docker_client().images.get(image)
    except (DockerException, ContainerError):
        return False
    return True


@dataclass(frozen=True)
class Leftover:
    """A container that sqla-bench started, as the Docker engine lists it."""

    id: str
    target: str
    image: str
    status: str
    owner: str
    owner_alive: bool | None  # None: its owner ran on another host

    @property
    def orphaned(self) -> bool:
        return self.owner_alive is False


def containers(client=None) -> list[Leftover]:
    """Every container sqla-bench started that still exists, running or not."""
    client = client or docker_client()
    found = client.containers.list(all=True, filters={"label": f"{LABEL}=true"})
    return [_leftover(container) for container in found]


def _leftover(container) -> Leftover:
    labels = container.labels
    owner = labels.get(OWNER_LABEL, "")
    tags = container.image.tags if container.image is not None else []
    return Leftover(
        id=container.short_id,
        target=labels.get(TARGET_LABEL, "?"),
        image=tags[0] if tags else container.attrs["Config"]["Image"],
        status=container.status,
        owner=owner,
        owner_alive=owner_alive(owner) if owner else False,
    )


def prune(everything: bool = False, say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Remove the containers whose owner is gone (or all of them); their ids."""
    client = docker_client()
    removed = []
    for leftover in containers(client):
        if everything or leftover.orphaned:
            client.containers.get(leftover.id).remove(force=True, v=True)
            say(f"removed {leftover.id} ({leftover.target}, {leftover.image})")
            removed.append(leftover.id)
    return removed
