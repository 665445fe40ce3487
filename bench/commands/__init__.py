"""One module per ``sqla-bench`` command, imported only when that command runs, so the
command line answers ``--help`` without loading SQLAlchemy, scipy or matplotlib; and
what the commands share: option types (``options``) and groups (``option_groups``),
options from a TOML file (``config_file``), what a console shows (``present``) and a
measuring run on the console (``run_console``).

Each command's module has ``DESCRIPTION`` (its ``--help`` text), ``NEEDS_SERVERS``
(False for a command that reads result files only: no server is set up for it),
``add_arguments(parser)`` and ``execute(args, servers, console) -> exit status``; the
one-line summaries that ``sqla-bench --help`` lists are in ``sqla_bench.cli.COMMANDS``.
Commands may import every layer below them (``run``, ``reporting``, ``measuring``,
``servers``, ``results``, ``base``); nothing but the entry points imports them.
"""
