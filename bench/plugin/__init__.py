"""The pytest plugin's parts (``sqla_bench.pytest_plugin`` registers them): statement
counting (``queries``), lazy loads and their call sites (``lazy_loads``), eager loads
never read (``eager_loads``), counts held to a committed file (``counts``) and the
replays behind ``--sqla-advise`` (``advise``). It may import the layers below the
commands: ``reporting``, ``measuring``, ``results`` and ``base``."""
