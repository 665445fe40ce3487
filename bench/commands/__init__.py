"""One module per ``sqla-bench`` command, imported only when that command runs, so the
command line answers ``--help`` without loading SQLAlchemy, scipy or matplotlib.

Each module has ``DESCRIPTION`` (the command's ``--help`` text), ``add_arguments(parser)``
and ``execute(args, servers, console) -> exit status``; the one-line summaries that
``sqla-bench --help`` lists are in ``bench.cli.COMMANDS``.
"""
