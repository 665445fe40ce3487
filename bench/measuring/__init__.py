"""The measuring path: the one clock (``kernel``), a cell's calls observed and sampled
(``observe``, ``measure``, under a ``policy``), engines and what a case receives
(``engines``, ``fixtures``, ``probes``), the verdict (``verify``), loads in process, in
worker processes, served over HTTP or from Locust (``load``, ``workers``, ``processes``,
``watch``, ``web``, ``served_app``, ``locust_load``), a client in a process of its own
(``client_process``), the machine's state (``machine``) and the child's side of an
instruction count (``callgrind``). It may import ``servers``, ``results`` and ``base``;
never ``run``, ``reporting`` or ``commands``."""
