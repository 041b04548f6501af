"""python -m bench.report HISTORY.json... : report and trend from saved runs."""

from bench.report.markdown import main

raise SystemExit(main())
