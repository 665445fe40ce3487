"""What people read of result files: console tables' data (``report``, ``load_tables``),
the decision guide (``verdicts``, ``guide``), the Markdown and HTML report
(``document``, ``sections``), PNG plots (``plots``) and the gate's output formats
(``gate_formats``). It imports ``results`` and ``base`` only, never what measures."""
