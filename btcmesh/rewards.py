"""Staker-side rewards client (issue 15): what ``btcmesh stake rewards`` / ``btcmesh stake claim``
call (the staker command wires them; until then use these functions directly).

Rewards of a BTC delegation are paid by the consumer chain through the mesh module; they are
claimable only to the Cosmos address the staker's proof of possession bound (the account that
submitted ``create_btc_delegation``), so ``claim_rewards`` must be signed by that account's wallet.
``client`` is a :class:`checkpoint.chain_client.ChainClient` (``execute(contract, msg, wallet)``,
``query(contract, msg)``).
"""

from __future__ import annotations

from typing import Any

from cosmos_chain.modules.base import module_address

MESH = "mesh"


def rewards_of(client: Any, *, staking_tx_hash: str | None = None, staker_btc_pk: str | None = None,
               address: str | None = None) -> dict[str, Any]:
    """Pending and claimed rewards: of one delegation, of a staker key, or paid to an address
    (exactly one of the three)."""
    given = [(k, v) for k, v in (("delegation", staking_tx_hash), ("staker", staker_btc_pk), ("address", address))
             if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of staking_tx_hash, staker_btc_pk, address")
    kind, value = given[0]
    field = {"delegation": "staking_tx_hash", "staker": "staker_btc_pk", "address": "address"}[kind]
    return client.query(module_address(MESH), {"rewards": {kind: {field: value}}})


def reward_totals(client: Any) -> dict[str, Any]:
    """Totals per validator and overall, with the reconciliation (``totals.balanced``)."""
    return client.query(module_address(MESH), {"rewards": {"totals": {}}})


def claim_rewards(client: Any, wallet: Any, staking_tx_hash: str | None = None) -> dict[str, Any]:
    """Claim pending rewards (of one delegation, or of every delegation paying ``wallet``'s address)
    to ``wallet``'s address. Returns ``{tx_hash, claimed, pending_after}``; the chain refuses a
    wallet other than the PoP-bound one."""
    body: dict[str, Any] = {} if staking_tx_hash is None else {"staking_tx_hash": staking_tx_hash}
    addr = str(wallet.address())
    before = rewards_of(client, address=addr)
    tx_hash = client.execute(module_address(MESH), {"claim_rewards": body}, wallet)
    after = rewards_of(client, address=addr)
    return {"tx_hash": tx_hash, "claimed": int(after["claimed"]) - int(before["claimed"]),
            "pending_after": int(after["pending"])}
