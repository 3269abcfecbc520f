"""``python -m btcmesh`` = the ``btcmesh`` command."""

from btcmesh.cli import main

raise SystemExit(main())
