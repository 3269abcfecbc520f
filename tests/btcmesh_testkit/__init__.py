"""Test support shared by every test directory (``tests/`` is on ``sys.path`` via the rootdir conftest).

* :mod:`btcmesh_testkit.oracles` — independent script-verification oracles (libbitcoinkernel, btclib).
* :mod:`btcmesh_testkit.btc` — PoW header mining, proof of possession, and :class:`~btcmesh_testkit.btc.StakeFixture`
  (a registry-ready BTC delegation with covenant signatures and oracle-checked spends).

No tests live here; the package name is distinctive so it never shadows a project package.
"""
