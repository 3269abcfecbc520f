"""The operator daemons, one module per role (Babylon ships each as its own program):

* :mod:`btcmesh.daemons.staker` — ``btcmesh stake`` (btc-staker / stakercli), with BIP-174/371 PSBTs;
* :mod:`btcmesh.daemons.fp` — ``btcmesh fp`` (finality-provider + eotsd's slashing protection);
* :mod:`btcmesh.daemons.covenant` — ``btcmesh covenant`` (covenant-emulator);
* :mod:`btcmesh.daemons.slasher` — ``btcmesh slasher`` (vigilante's BTC slasher, atomic slasher included);
* :mod:`btcmesh.daemons.devnet` — ``btcmesh devnet up|status|down`` (every part as its own OS process).

:mod:`btcmesh.daemons.common` holds what they share: TOML config (``tomllib``), logfmt log lines,
Prometheus metrics (``prometheus_client``), the SQLite state directory, PID/status files and
test-only crash points.
"""
