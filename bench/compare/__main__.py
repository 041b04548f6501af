"""python -m bench.compare OLD.json NEW.json : statistical comparison of two saved runs."""

from bench.compare.stats import main

raise SystemExit(main())
