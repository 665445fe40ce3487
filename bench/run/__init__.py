"""A run, from its plan to its result file: the plan checked up front (``plan``), the
pipeline that finishes the file however the run ends (``pipeline``), the runner that
seeds each target and measures each cell (``runner``) over a route (``routes``), with its
loads (``loads``) and records (``records``); the result file's header (``environment``);
an application's workload (``application``, with its ``mappers``, ``application_modules``,
data made by ``generate`` or read as ``existing_data``); the lock on a database
(``dblock``); instruction counts (``instructions``) and the harness's own benchmarks
(``selfcheck``). It may import ``measuring``, ``servers``, ``results`` and ``base``;
never ``commands`` or ``reporting``."""
