"""Where a database is and what stands in front of it: targets and their drivers
(``targets``), containers (``containers``), PgBouncer (``pgbouncer``), the latency proxy
(``latency``, its process in ``proxy_process``), helper processes that end with their
parent (``children``, ``with_parent``), the tables a run owns (``owned``) and the rights
it needs (``grants``). It may import ``results`` and ``base`` only."""
