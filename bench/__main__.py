from sqla_bench.cli import main

raise SystemExit(main())
