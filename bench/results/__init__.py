"""Result files and what is computed from them alone: the files themselves and their
schema (``files``), the reading of older versions (``upgrades``), the figures of a load
that reports read (``load_figures``), statistics (``stats``), the regression gate
(``compare``, ``timing_gate``, ``history``) and the committed baselines (``baseline``).
It imports ``base`` only: reading a result file never loads what measures."""
