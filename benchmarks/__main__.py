"""``python -m benchmarks [--quick] [--budget S] [--only NAMES] [--json PATH]``: see run_all.py."""

from benchmarks.run_all import main

raise SystemExit(main())
