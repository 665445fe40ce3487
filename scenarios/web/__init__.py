"""Web scenarios: the FastAPI integration pattern (``scenarios.web.app``), measured over
real HTTP by ``sqla-bench run --scenario web --concurrency ...``.

Each scenario is a request to the app; the app's sync and async twins are the two modes.
Declaring them imports nothing from FastAPI, so discovery works without the ``web``
extra; only serving an app needs it.
"""

from __future__ import annotations

from dataclasses import replace

from sqla_bench.scenarios.dataset import DatasetSize, title, user_email, user_name
from sqla_bench.scenarios.expect import Outcome, Raises, Setting, Works, missing_greenlet
from sqla_bench.scenarios.registry import Request, web
from sqla_bench.scenarios.strategies import STRATEGIES as DECLARED
from sqla_bench.scenarios.strategies import query_options

APP = f"{__name__}.app:create_app"
MAX_LIMIT = 100  # the app lists at most this many users
# Every strategy the app offers for GET /users (each one a query option): what each
# costs, or how it fails, is the point of serving them all.
STRATEGIES = query_options()


def _user(user_id: int) -> dict:
    return {"id": user_id, "name": user_name(user_id), "email": user_email(user_id)}


def _users_with_posts(setting: Setting, size: DatasetSize, strategy: str, limit: int) -> list:
    """GET /users: users by name (then id), each with its posts in id order."""
    ids = sorted(range(1, size.users + 1), key=lambda key: (user_name(key), key))
    listed = ids[: min(limit, MAX_LIMIT)]
    posts = [[{"id": p, "title": title(p)} for p in size.posts_of(key)] for key in listed]
    return [{**_user(key), "posts": mine} for key, mine in zip(listed, posts, strict=True)]


@web(
    "web.get_user",
    app=APP,
    statements=1,
    params={"user_id": (1,)},
    returns=lambda setting, size, user_id: _user(user_id),
)
def get_user(user_id: int) -> Request:
    """GET /users/{id}: one user by primary key, read-only."""
    return Request("GET", f"/users/{user_id}")


def users_with_posts_outcome(
    setting: Setting, size: DatasetSize, strategy: str, limit: int
) -> Outcome:
    """What GET /users costs per strategy. The posts are read while the response model is
    serialised, after the endpoint returned: a lazy load there is implicit IO, which the
    async app cannot do (MissingGreenlet on the first user) and the sync app does once per
    user, in FastAPI's thread pool; ``raise`` refuses in both."""
    listed = min(limit, size.users)
    declared = DECLARED[strategy]
    fails = declared.refuses is not None or (declared.implicit_io and setting.mode == "async")
    if not fails or listed == 0:
        return Works(1 + declared.statements(listed))
    # Pydantic turns the error raised while it reads ``posts`` into a validation error
    # of the response, which FastAPI raises (and answers 500).
    from fastapi.exceptions import ResponseValidationError

    if declared.refuses is not None:
        return Raises(declared.refuses, 1, wrapped_in=ResponseValidationError)
    cause = missing_greenlet(setting, 1)
    if cause.attempted is not None:
        # Pydantic reads every user's posts before it reports, so on a driver where the
        # lazy SELECT starts before it fails, it starts once per user listed.
        cause = replace(cause, attempted=1 + listed)
    return replace(cause, wrapped_in=ResponseValidationError)


@web(
    "web.list_users",
    app=APP,
    expect=users_with_posts_outcome,
    returns=_users_with_posts,
    params={"strategy": STRATEGIES, "limit": (20,)},
)
def list_users(strategy: str, limit: int) -> Request:
    """GET /users: users by name with their posts, loaded by the app's strategy."""
    return Request("GET", f"/users?limit={limit}", app_options={"strategy": strategy})
