"""Test support shared by every test directory (``tests/`` is on ``sys.path`` via the rootdir conftest).

* :mod:`btcmesh_testkit.oracles` — independent script-verification oracles (libbitcoinkernel, btclib).
* :mod:`btcmesh_testkit.btc` — PoW header mining, proof of possession, and :class:`~btcmesh_testkit.btc.StakeFixture`
  (a registry-ready BTC delegation with covenant signatures and oracle-checked spends).
* :mod:`btcmesh_testkit.demo_checks` — the spend checks both demo end-to-end suites make.
* :mod:`btcmesh_testkit.net` — loopback helpers (a closed port).
* :mod:`btcmesh_testkit.mesh_upstream` — the upstream Mesh Security harness (fail in CI, skip elsewhere).
* :mod:`btcmesh_testkit.paths` — repository data paths (conformance vectors).

No tests live here; the package name is distinctive so it never shadows a project package.
"""
