"""The shop's own twins."""

from sqlalchemy import func, select

from sqla_bench.scenarios.models import User
from sqla_bench.scenarios.registry import scenario


def every_user(setting, size, **params):
    """What the call must return, from the dataset's definition."""
    return size.users


@scenario("shop.count_users", statements=1, returns=every_user)
def count_users(session):
    """Count the users in one SELECT count(*)."""
    return session.scalar(select(func.count()).select_from(User))


@count_users.twin
async def count_users_async(session):
    return await session.scalar(select(func.count()).select_from(User))
