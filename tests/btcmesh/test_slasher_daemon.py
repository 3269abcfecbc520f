"""Issue 11: the slasher daemon's atomic slasher (vigilante's): a slashing tx of one delegation seen on
Bitcoin → the FP key extracted from a covenant's completed adaptor signature → the FP's other
delegations slashed (one on the staking path, one that had unbonded on the unbonding path), with no
equivocation evidence on the chain. Real regtest node (EmbeddedNode,
libbitcoinkernel-validated); the chain's registry is a query stub holding registry-shaped
delegations signed by the real covenant committee code. Both oracles check every slashing tx.
A second daemon on the same records (a restart) sends nothing again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from btcmesh_testkit.oracles import btclib_verify, kernel_verify

from btc_staking.keys import secret_even_y, xonly_from_secret
from btc_staking.params import regtest_default_params
from btc_staking.tx import Tx
from btcmesh.covenant import CovenantCommittee
from btcmesh.daemons.common import COMMON_SPEC, EventLog, load_config
from btcmesh.daemons.slasher import SPEC, SlasherDaemon, extract_fp_key_from_slashing_tx
from btcmesh.staker import Staker
from checkpoint.slasher import QuerySlasherChain, SlashableDelegation, Slasher

FP_SK = secret_even_y(bytes.fromhex("a1" * 32))
OTHER_FP_SK = secret_even_y(bytes.fromhex("a2" * 32))


def _registry_json(d: Any, committee: CovenantCommittee) -> dict:
    """A delegation as the registry answers it (``covenant_sigs`` etc. as ``add_covenant_sigs`` stores them)."""
    body = d.create_msg(pop=b"\x00" * 64)
    body.update(staking_tx_hash=d.staking_tx_hash, status="ACTIVE", covenant_sigs=[], covenant_unbonding_sigs=[],
                covenant_slashing_unbonding_sigs=[])
    for s in committee.sign(body, signers=committee.quorum):
        body["covenant_sigs"].append({"pk": s.pk.hex(), "adaptor_sigs": [a.serialize().hex()
                                                                          for a in s.slashing_tx_sigs]})
        body["covenant_unbonding_sigs"].append({"pk": s.pk.hex(), "sig": s.unbonding_tx_sig.hex()})
        body["covenant_slashing_unbonding_sigs"].append({"pk": s.pk.hex(), "adaptor_sigs": [
            a.serialize().hex() for a in s.slashing_unbonding_tx_sigs]})
    return body


@pytest.fixture()
def world(tmp_path: Path):
    from regtest.embedded import EmbeddedNode
    from regtest.wallet import Wallet

    params = regtest_default_params(confirmation_depth=3, unbonding_time_blocks=4)
    node = EmbeddedNode()
    try:
        stakers, dels = [], []
        for i in range(4):
            sk = secret_even_y(bytes([0xb0 + i]) * 32)
            wallet = Wallet(node, sk)
            node.mine_blocks(1, wallet.script_pubkey)
            stakers.append((Staker(sk, params), wallet))
        node.mine_blocks(100, bytes.fromhex("51"))
        committee = CovenantCommittee.regtest(params)
        fps = [xonly_from_secret(FP_SK), xonly_from_secret(FP_SK), xonly_from_secret(OTHER_FP_SK),
               xonly_from_secret(FP_SK)]
        for (staker, wallet), fp in zip(stakers, fps):
            wallet.scan()
            tx = staker.fund_staking_tx(wallet, fp, 150, 200_000)
            node.send_raw_transaction(tx.serialize())
            dels.append(staker.delegation(tx, [fp], 150))
        node.mine_blocks(1, bytes.fromhex("51"))
        registry = [_registry_json(d, committee) for d in dels]
        # delegation 3 unbonds first (covenant-signed unbonding tx on Bitcoin): it must be slashed on that path
        cov = {bytes.fromhex(c["pk"]): bytes.fromhex(c["sig"]) for c in registry[3]["covenant_unbonding_sigs"]}
        node.send_raw_transaction(stakers[3][0].signed_unbonding_tx(dels[3], cov).serialize())
        node.mine_blocks(1, bytes.fromhex("51"))

        def query(contract: str, msg: dict) -> Any:
            (name, body), = msg.items()
            if name == "slashed_finality_providers":
                return {"finality_providers": []}  # no evidence on the chain at all
            if name == "evidence":
                return {"evidence": []}
            if name == "delegations":
                fp = body.get("fp_btc_pk")
                return {"delegations": [d for d in registry if fp is None or fp in d["fp_btc_pk_list"]],
                        "next_key": None}
            raise AssertionError(f"unexpected query {name}")

        chain = QuerySlasherChain(query=query, finality="finality", registry="registry", params=params)
        cfg_file = tmp_path / "slasher.toml"
        cfg_file.write_text('[chain]\nrest = "http://127.0.0.1:1"\n[daemon]\nmetrics_port = -1\n')
        yield node, params, dels, registry, chain, load_config(cfg_file, SPEC)
    finally:
        node.close()


def test_atomic_slasher_slashes_the_fps_other_delegations(world, capsys) -> None:
    node, params, dels, registry, chain, cfg = world
    # someone else slashed delegation 0 of FP on Bitcoin (completed with the FP key)
    first = Slasher(chain, node).build(SlashableDelegation.from_json(registry[0]), FP_SK, params)[1]
    node.send_raw_transaction(first.serialize())
    node.mine_blocks(1, bytes.fromhex("51"))
    assert extract_fp_key_from_slashing_tx(registry[0], first, "staking", params) == (
        xonly_from_secret(FP_SK).hex(), FP_SK)
    assert extract_fp_key_from_slashing_tx(registry[2], first, "staking", params) is None  # not its tx

    daemon = SlasherDaemon(cfg, EventLog("slasher"), chain=chain, btc=node)
    daemon.atomic_round(node.get_block_count())
    log = capsys.readouterr().err
    assert "event=fp_key_extracted" in log and "source=atomic" in log
    assert daemon.keys[xonly_from_secret(FP_SK).hex()] == FP_SK
    row = daemon.records.get(dels[1].staking_tx_hash)
    assert row is not None and (row["state"], row["source"], row["path"], row["broadcasts"]) == (
        "broadcast", "atomic", "staking", 1)
    second = Tx.parse(node.get_raw_transaction(row["txid"]))
    assert second.inputs[0].prevout.txid == dels[1].staking_tx.txid()
    prevouts = [dels[1].staking_output]
    assert kernel_verify(second, prevouts) and btclib_verify(second, prevouts)
    assert kernel_verify(first, [dels[0].staking_output]) and btclib_verify(first, [dels[0].staking_output])
    assert daemon.records.get(dels[0].staking_tx_hash)["state"] == "confirmed"  # seen, not re-sent
    unbonded = daemon.records.get(dels[3].staking_tx_hash)
    assert (unbonded["state"], unbonded["path"], unbonded["source"]) == ("broadcast", "unbonding", "atomic")
    third = Tx.parse(node.get_raw_transaction(unbonded["txid"]))
    assert third.inputs[0].prevout.txid == dels[3].unbonding_tx.txid()
    assert kernel_verify(third, [dels[3].unbonding_info.output]) and btclib_verify(third, [dels[3].unbonding_info.output])
    assert daemon.records.get(dels[2].staking_tx_hash) is None  # another FP's delegation is left alone
    daemon.close()

    # a restart on the same records: nothing sent again, the scan resumes where it stopped
    again = SlasherDaemon(cfg, EventLog("slasher"), chain=chain, btc=node)
    mempool = list(node.get_mempool())
    again.atomic_round(node.get_block_count())
    assert node.get_mempool() == mempool
    assert again.records.get(dels[1].staking_tx_hash)["broadcasts"] == 1
    assert "event=slashing_broadcast" not in capsys.readouterr().err
    node.mine_blocks(1, bytes.fromhex("51"))
    again.confirm_round()
    assert again.records.get(dels[1].staking_tx_hash)["state"] == "confirmed"
    assert again.records.get(dels[3].staking_tx_hash)["state"] == "confirmed"
    again.close()


def test_common_spec_is_part_of_every_daemon_spec() -> None:
    from btcmesh.daemons import covenant, fp, staker

    for spec in (SPEC, fp.SPEC, covenant.SPEC, staker.SPEC):
        assert set(COMMON_SPEC) <= set(spec)
