"""Stake that comes back: a delegation re-proven after a deep BTC reorg (issue 12) and a mesh validator
jailed for liveness (issue 9) count again in the mesh through the normal bond/stake path.

* Re-proven after a reorg: the mesh reuses the delegation's record and collateral (one collateral per
  staking tx, never a second mint). Mesh Security cannot cancel an unbonding, so while the earlier
  unstake still holds the lien the record is WAITING (collateral, no virtual stake); the block in which
  that unbond matures stakes it again. Re-proven after the unbond matured, it is staked at once.
* Jailed validator: the consumer's ``virtual_staking`` delegation to it drops to 0 (bond requests kept)
  and comes back on unjail; a delegation that turns ACTIVE during the jail bonds its collateral, WAITs,
  and is staked on unjail."""

from __future__ import annotations

import pytest
from mesh_chain_helpers import Chain, Key, StubRegistry
from test_chain_valset import JailDriver, valset_genesis

pytestmark = pytest.mark.timeout(60)

ADMIN, OP, RELAYER = (Key.from_seed(90 + i) for i in range(3))
FP = "b7" * 32
UNBONDING = 1000


def start() -> Chain:
    c = Chain.start([ADMIN, OP, RELAYER], {"mesh": {"admin": ADMIN.address, "block_reward": 0,
                                                    "unbonding_period": UNBONDING},
                                           "valset": valset_genesis()}, modules=[StubRegistry(), JailDriver()])
    c.ok(OP, "btc_staking", {"create_finality_provider": {"btc_pk": FP, "validator": "val0"}})
    return c


def delegation(n: int, value: int) -> dict:
    return {"staking_tx_hash": f"{n:02x}" * 32, "staker_btc_pk": "5d" * 32, "fp_btc_pk_list": [FP],
            "staking_value": value}


def set_status(c: Chain, d: dict, status: str) -> None:
    res = c.execute(RELAYER, "btc_staking", {"set_status": {"delegation": d, "status": status}})
    assert res.code == 0, res.log


def record(c: Chain, d: dict) -> dict:
    return c.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": d["staking_tx_hash"]}}})["delegation"]


def consumer_delegation(c: Chain, validator: str) -> int:
    return int(c.query("mesh", {"virtual_staking": {"delegation": {"validator": validator}}})["amount"])


def vault_collateral(c: Chain, d: dict) -> int:
    acct = c.query("mesh", {"vault": {"account": {"account": record(c, d)["account"]}}})
    return int(acct["bonded"])


def vault_holds(c: Chain) -> int:
    """Sats the vault contract holds in the mesh bank: all collateral ever minted and not burned."""
    vault = c.query("mesh", {"config": {}})["contracts"]["vault"]
    return int(c.query("mesh", {"balance": {"address": vault}})["amount"]["amount"])


def virtual_stake(c: Chain, validator: str) -> int:
    return int(c.query("mesh", {"adapter": {"validator_virtual_stake": {"validator": validator}}})["virtual_stake"])


def target(c: Chain) -> int:
    return c.query("valset", {"target": {}})["powers"]["val0"]


def test_reproven_before_the_unbond_matures_waits_then_stakes_again_with_one_collateral() -> None:
    c = start()
    d = delegation(0x21, 500_000)
    set_status(c, d, "ACTIVE")
    assert record(c, d)["staked_sat"] == 500_000 and consumer_delegation(c, "val0") == 500_000
    assert target(c) == 15
    set_status(c, d, "REORGED")
    rec = record(c, d)
    assert (rec["status"], rec["staked_sat"], rec["pending_sat"]) == ("UNBONDING", 0, 500_000)
    assert consumer_delegation(c, "val0") == 0 and target(c) == 10
    c.block(dt=UNBONDING // 2)
    set_status(c, d, "ACTIVE")  # proven again while the first unstake still holds the lien
    rec = record(c, d)
    assert (rec["status"], rec["staked_sat"], rec["pending_sat"], rec["virtual_stake"]) == ("WAITING", 0, 500_000, 0)
    assert rec["collateral_sat"] == 500_000 and vault_collateral(c, d) == 500_000  # no second mint
    assert vault_holds(c) == 500_000
    assert consumer_delegation(c, "val0") == 0
    c.block(dt=UNBONDING // 2 - 10)
    assert record(c, d)["status"] == "WAITING"
    c.block(dt=20)  # the first unbond matures: its lien is released and the same collateral is staked
    rec = record(c, d)
    assert (rec["status"], rec["staked_sat"], rec["pending_sat"], rec["virtual_stake"]) == \
        ("ACTIVE", 500_000, 0, 500_000)
    assert vault_collateral(c, d) == 500_000 and consumer_delegation(c, "val0") == 500_000 and target(c) == 15
    assert vault_holds(c) == 500_000
    lien = c.query("mesh", {"adapter": {"lien": {"staking_tx_hash": d["staking_tx_hash"]}}})["lien"]
    assert lien["amount"] == {"low": "500000", "high": "500000"}  # one lien of the value, not two


def test_reproven_after_the_unbond_matured_is_staked_at_once() -> None:
    c = start()
    d = delegation(0x22, 300_000)
    set_status(c, d, "ACTIVE")
    set_status(c, d, "REORGED")
    c.block(dt=UNBONDING + 1)
    assert record(c, d)["pending_sat"] == 0 and record(c, d)["collateral_sat"] == 300_000
    set_status(c, d, "ACTIVE")
    rec = record(c, d)
    assert (rec["status"], rec["staked_sat"], rec["virtual_stake"], rec["collateral_sat"]) == \
        ("ACTIVE", 300_000, 300_000, 300_000)
    assert consumer_delegation(c, "val0") == 300_000
    # and it can leave again through the normal path
    set_status(c, d, "UNBONDING")
    assert record(c, d)["status"] == "UNBONDING" and consumer_delegation(c, "val0") == 0


def test_jail_removes_consumer_virtual_stake_and_a_delegation_activated_meanwhile_counts_after_unjail() -> None:
    c = start()
    first, second = delegation(0x31, 500_000), delegation(0x32, 200_000)
    set_status(c, first, "ACTIVE")
    assert consumer_delegation(c, "val0") == 500_000
    c.ok(RELAYER, "jail_driver", {"jail": {"fp": FP}})
    assert consumer_delegation(c, "val0") == 0  # the consumer no longer delegates to the jailed validator
    requests = c.query("mesh", {"virtual_staking": {"bond_requests": {}}})["requests"]
    assert requests == {"val0": "500000"}  # the provider's stake is kept, only not delegated
    assert target(c) == 0 and virtual_stake(c, "val0") == 0
    set_status(c, second, "ACTIVE")  # turns ACTIVE while val0 is jailed
    rec = record(c, second)
    assert (rec["status"], rec["collateral_sat"], rec["staked_sat"]) == ("WAITING", 200_000, 0)
    assert consumer_delegation(c, "val0") == 0
    c.block()
    assert record(c, second)["status"] == "WAITING"  # nothing is staked on a jailed validator
    c.ok(RELAYER, "jail_driver", {"unjail": {"fp": FP}})
    rec = record(c, second)
    assert (rec["status"], rec["staked_sat"], rec["virtual_stake"]) == ("ACTIVE", 200_000, 200_000)
    assert consumer_delegation(c, "val0") == 700_000
    assert virtual_stake(c, "val0") == 700_000
    assert target(c) == 17  # 10 own + 7 virtual


def test_a_waiting_delegation_leaves_like_any_other() -> None:
    c = start()
    set_status(c, delegation(0x40, 100_000), "ACTIVE")  # an FP with power (only such are jailed)
    d = delegation(0x41, 400_000)
    c.ok(RELAYER, "jail_driver", {"jail": {"fp": FP}})
    set_status(c, d, "ACTIVE")
    assert record(c, d)["status"] == "WAITING"
    set_status(c, d, "UNBONDING")  # unbonds before the validator is unjailed: never staked
    assert record(c, d)["status"] == "UNBONDING"
    c.ok(RELAYER, "jail_driver", {"unjail": {"fp": FP}})
    assert record(c, d)["staked_sat"] == 0 and consumer_delegation(c, "val0") == 100_000
    set_status(c, d, "WITHDRAWN")
    rec = record(c, d)
    assert (rec["status"], rec["collateral_sat"]) == ("WITHDRAWN", 0)
