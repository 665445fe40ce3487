"""The FastAPI integration pattern, as engineers copy it, in an async and a sync twin.

The async app: an ``AsyncSession`` per request from a ``get_db`` dependency, made by
``async_sessionmaker(engine, expire_on_commit=False)``; writes inside ``async with
db.begin()`` so that read-only paths never commit; a 404 for a missing row; a lifespan
that creates the engine and awaits ``engine.dispose()`` at shutdown. The sync app is the
same with plain ``def`` endpoints and a ``Session``, which FastAPI runs in its thread
pool, so the two can be compared request for request.

Endpoints (``create_app(mode, url, ...)`` builds either app):

- ``GET /users/{id}``: one user, 404 when missing;
- ``GET /users?limit=N``: users ordered by name (then id) with their posts, loaded by the
  app instance's ``strategy`` (any strategy that is a query option, as declared in
  ``scenarios.strategies``: ``lazy``, ``joined``, ``selectin``, ``subquery``,
  ``immediate``, ``raise``), serialised through a response model;
- ``POST /users`` and ``PATCH /users/{id}``: a user created or changed;
- ``POST /users/{id}/posts``: a post and the new tags it introduces, in one transaction.
  A tag name is created once, by whoever introduces it: a name that exists is a conflict
  (409), and the post written before the tags is rolled back with them.

This module imports FastAPI, which is an optional dependency (the ``web`` extra);
``scenarios.web`` declares the scenarios without importing it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import create_engine, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from sqla_bench.scenarios.models import Post, Tag, User
from sqla_bench.scenarios.strategies import STRATEGIES, query_options
from sqla_bench.scenarios.web import MAX_LIMIT

LOADERS: dict[str, Callable[..., Any]] = {name: STRATEGIES[name].option for name in query_options()}


# --- what goes over the wire ---------------------------------------------------------------


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str


class UserWithPosts(UserOut):
    # Read from the ORM object while the response is serialised: a relationship that was
    # not loaded eagerly is loaded here, which async code cannot do implicitly.
    posts: list[PostOut]


class TaggedPost(PostOut):
    tags: list[str]


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    email: str = Field(min_length=3, max_length=120)


class UserChange(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=60)
    email: str | None = Field(default=None, min_length=3, max_length=120)


class NewPost(BaseModel):
    title: str = Field(min_length=1, max_length=120)
    tags: list[str] = Field(default_factory=list)


# --- shared by both twins -----------------------------------------------------------------


def users_query(strategy: str, limit: int):
    """Users by name, posts loaded as the app's strategy says."""
    query = select(User).order_by(User.name, User.id).limit(min(limit, MAX_LIMIT))
    return query.options(LOADERS[strategy](User.posts))


def new_post(user_id: int, body: NewPost) -> Post:
    # An empty ``tags`` set now is loaded state: extending it after the flush adds to it
    # without a lazy load of the collection (which async code could not do implicitly).
    return Post(user_id=user_id, title=body.title, body="", tags=[])


def tagged(post: Post, names: list[str]) -> TaggedPost:
    return TaggedPost(id=post.id, title=post.title, tags=names)


def _conflict(request: Request, error: IntegrityError) -> JSONResponse:
    # The transaction was rolled back by ``begin()`` before this runs.
    return JSONResponse({"detail": "conflict: a unique value exists already"}, status_code=409)


def _missing() -> HTTPException:
    return HTTPException(status_code=404, detail="user not found")


def create_app(
    mode: str,
    url: str | URL,
    *,
    strategy: str = "selectin",
    engine_options: dict[str, Any] | None = None,
    dispose: bool = True,
) -> FastAPI:
    """The async (``mode="async"``) or sync app on ``url``; ``dispose=False`` leaves the
    engine's pooled connections open at shutdown, to show what that leaves behind."""
    if strategy not in LOADERS:
        offered = ", ".join(LOADERS)
        raise ValueError(
            f"the app offers no strategy {strategy!r} (a query option); choose from {offered}"
        )
    build = _async_app if mode == "async" else _sync_app
    app = build(url, strategy, engine_options or {}, dispose)
    app.add_exception_handler(IntegrityError, _conflict)
    return app


# One session per request, closed when the request is done (which rolls back whatever a
# read left open: no COMMIT on a read-only path).


async def get_async_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as db:
        yield db


def get_sync_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as db:
        yield db


# Module-level, so that FastAPI can resolve them from the (postponed) annotations.
AsyncDb = Annotated[AsyncSession, Depends(get_async_db)]
SyncDb = Annotated[Session, Depends(get_sync_db)]


# --- the async app ------------------------------------------------------------------------


def _async_app(url: str | URL, strategy: str, options: dict[str, Any], dispose: bool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(url, **options)
        app.state.engine = engine
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        yield
        if dispose:
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/users/{user_id}", response_model=UserOut)
    async def read_user(user_id: int, db: AsyncDb) -> User:
        user = await db.get(User, user_id)
        if user is None:
            raise _missing()
        return user

    @app.get("/users", response_model=list[UserWithPosts])
    async def list_users(db: AsyncDb, limit: int = 20) -> list[User]:
        return list((await db.scalars(users_query(strategy, limit))).unique())

    @app.post("/users", response_model=UserOut, status_code=201)
    async def create_user(body: NewUser, db: AsyncDb) -> User:
        async with db.begin():
            user = User(name=body.name, email=body.email)
            db.add(user)
        return user

    @app.patch("/users/{user_id}", response_model=UserOut)
    async def change_user(user_id: int, body: UserChange, db: AsyncDb) -> User:
        async with db.begin():
            user = await db.get(User, user_id)
            if user is None:
                raise _missing()
            for name, value in body.model_dump(exclude_none=True).items():
                setattr(user, name, value)
        return user

    @app.post("/users/{user_id}/posts", response_model=TaggedPost, status_code=201)
    async def create_post(user_id: int, body: NewPost, db: AsyncDb) -> TaggedPost:
        async with db.begin():
            if await db.get(User, user_id) is None:
                raise _missing()
            post = new_post(user_id, body)
            db.add(post)
            await db.flush()  # the post is written first: a conflict below undoes it
            post.tags.extend(Tag(name=name) for name in body.tags)
            await db.flush()
        return tagged(post, body.tags)

    return app


# --- the sync app -------------------------------------------------------------------------


def _sync_app(url: str | URL, strategy: str, options: dict[str, Any], dispose: bool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url, **options)
        app.state.engine = engine
        app.state.sessions = sessionmaker(engine, expire_on_commit=False)
        yield
        if dispose:
            engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/users/{user_id}", response_model=UserOut)
    def read_user(user_id: int, db: SyncDb) -> User:
        user = db.get(User, user_id)
        if user is None:
            raise _missing()
        return user

    @app.get("/users", response_model=list[UserWithPosts])
    def list_users(db: SyncDb, limit: int = 20) -> list[User]:
        return list(db.scalars(users_query(strategy, limit)).unique())

    @app.post("/users", response_model=UserOut, status_code=201)
    def create_user(body: NewUser, db: SyncDb) -> User:
        with db.begin():
            user = User(name=body.name, email=body.email)
            db.add(user)
        return user

    @app.patch("/users/{user_id}", response_model=UserOut)
    def change_user(user_id: int, body: UserChange, db: SyncDb) -> User:
        with db.begin():
            user = db.get(User, user_id)
            if user is None:
                raise _missing()
            for name, value in body.model_dump(exclude_none=True).items():
                setattr(user, name, value)
        return user

    @app.post("/users/{user_id}/posts", response_model=TaggedPost, status_code=201)
    def create_post(user_id: int, body: NewPost, db: SyncDb) -> TaggedPost:
        with db.begin():
            if db.get(User, user_id) is None:
                raise _missing()
            post = new_post(user_id, body)
            db.add(post)
            db.flush()
            post.tags.extend(Tag(name=name) for name in body.tags)
            db.flush()
        return tagged(post, body.tags)

    return app
