"""python -m bench.report HISTORY.json... : report and trend from saved runs."""

import sys

from bench.report.markdown import main

sys.exit(main())
