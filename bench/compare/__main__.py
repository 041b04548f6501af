"""python -m bench.compare OLD.json NEW.json : statistical comparison of two saved runs."""

import sys

from bench.compare.stats import main

sys.exit(main())
