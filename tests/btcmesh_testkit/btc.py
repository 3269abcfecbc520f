"""Bitcoin-side test fixtures shared by the chain, API and checkpoint tests.

* :func:`mine_header` grinds a nonce until a header meets its own ``bits`` (regtest 0x207fffff).
* :func:`pop_hex` is the registry's proof of possession over a bech32 sender.
* :class:`StakeFixture` builds everything ``create_btc_delegation`` needs (staking tx, unbonding
  tx, both slashing txs, the staker's signatures) plus covenant signatures and the witnessed
  unbonding / withdrawal spends (checked with libbitcoinkernel before they are "mined").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from btc_staking.adaptor import encrypt_sign
from btc_staking.headers import BlockHeader, check_proof_of_work
from btc_staking.keys import schnorr_sign, xonly_from_secret
from btc_staking.params import StakingParams, covenant_secret, regtest_default_params
from btc_staking.sighash import SIGHASH_DEFAULT, taproot_sighash
from btc_staking.signing import sign_script_path
from btc_staking.staking import (
    build_slashing_tx,
    build_staking_info,
    build_unbonding_info,
    build_unbonding_tx,
    build_withdraw_tx,
)
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script
from btc_staking.witness import timelock_witness, unbonding_witness

from .oracles import kernel_verify

# Small regtest parameters shared by the chain, API and checkpoint test helpers.
K = 2
UNBONDING_TIME = 5
NUM_COVENANTS = 3
QUORUM = 2


def small_params(**overrides: Any) -> StakingParams:
    """Regtest params (3 devnet covenant keys, quorum 2) with short timelocks and k = K, so every
    status is reachable in a few blocks."""
    fields: dict[str, Any] = dict(min_staking_time_blocks=10, max_staking_time_blocks=1000,
                                  unbonding_time_blocks=UNBONDING_TIME, confirmation_depth=K)
    fields.update(overrides)
    return regtest_default_params(NUM_COVENANTS, QUORUM, **fields)

REGTEST_BITS = 0x207FFFFF


def labelled_secret(namespace: bytes, label: str) -> bytes:
    """Deterministic secp256k1 secret: sha256(namespace + label)."""
    return hashlib.sha256(namespace + label.encode()).digest()


def mine_header(prev: bytes, root: bytes, timestamp: int, bits: int = REGTEST_BITS, version: int = 0x20000000,
                max_tries: int = 1_000_000) -> BlockHeader:
    """Grind the nonce until the header meets its own ``bits`` (bounded)."""
    for nonce in range(max_tries):
        header = BlockHeader(version, prev, root, timestamp, bits, nonce)
        if check_proof_of_work(header):
            return header
    raise RuntimeError(f"no nonce below {max_tries} meets bits {bits:#010x}")


def pop_hex(sk: bytes, sender: str) -> str:
    """Proof of possession (Babylon types/pop.go): BIP-340 signature over sha256 of the sender's raw
    address bytes (the bech32 string decoded), hex."""
    from cosmpy.crypto.address import Address

    return schnorr_sign(sk, hashlib.sha256(bytes(Address(sender))).digest()).hex()


@dataclass
class StakeFixture:
    """One staker's BTC delegation with every tx and signature the registry needs.

    Keys come from ``labelled_secret(SECRET_NAMESPACE, "staker/" + staker_label)``; subclasses set
    their own namespace so each suite keeps its own deterministic keys."""

    SECRET_NAMESPACE: ClassVar[bytes] = b"btcmesh-testkit/"

    staker_label: str
    fps: list[bytes]
    value: int
    staking_time: int
    params: StakingParams
    funding_label: str = ""
    staking_tx: Tx = field(init=False)
    unbonding_tx: Tx = field(init=False)

    def __post_init__(self) -> None:
        p = self.params
        self.staker_sk = labelled_secret(self.SECRET_NAMESPACE, "staker/" + self.staker_label)
        self.staker_pk = xonly_from_secret(self.staker_sk)
        self.info = build_staking_info(self.staker_pk, self.fps, p.covenant_pks, p.covenant_quorum,
                                       self.staking_time, self.value)
        funding = OutPoint(hashlib.sha256(f"funding/{self.staker_label}/{self.funding_label}".encode()).digest(), 0)
        change = TxOut(50_000, p2tr_script(self.staker_pk))
        self.staking_tx = Tx(2, [TxIn(funding)], [self.info.output, change], 0)
        self.staking_outpoint = OutPoint(self.staking_tx.txid(), 0)
        self.slashing_tx = build_slashing_tx(self.staking_outpoint, self.value, self.staker_pk, p)
        self.unbonding_tx = build_unbonding_tx(self.staking_outpoint, self.value, self.staker_pk, self.fps, p)
        self.unbonding_value = self.value - p.unbonding_fee_sat
        self.unbonding_info = build_unbonding_info(self.staker_pk, self.fps, p.covenant_pks, p.covenant_quorum,
                                                   p.unbonding_time_blocks, self.unbonding_value)
        self.unbonding_outpoint = OutPoint(self.unbonding_tx.txid(), 0)
        self.unbonding_slashing_tx = build_slashing_tx(self.unbonding_outpoint, self.unbonding_value,
                                                       self.staker_pk, p)

    @property
    def staking_tx_hash(self) -> str:
        """Display-order staking txid."""
        return self.staking_tx.txid_hex()

    def create_msg(self, sender: str, inclusion_proof: dict[str, Any] | None = None) -> dict[str, Any]:
        """``create_btc_delegation`` body (signed by the staker)."""
        body: dict[str, Any] = {
            "staker_btc_pk": self.staker_pk.hex(),
            "pop": pop_hex(self.staker_sk, sender),
            "fp_btc_pk_list": [k.hex() for k in self.fps],
            "staking_time": self.staking_time,
            "staking_value": self.value,
            "staking_tx": self.staking_tx.serialize().hex(),
            "staking_output_index": 0,
            "slashing_tx": self.slashing_tx.serialize().hex(),
            "delegator_slashing_sig": sign_script_path(self.staker_sk, self.slashing_tx, 0, [self.info.output],
                                                       self.info.slashing_script).hex(),
            "unbonding_time": self.params.unbonding_time_blocks,
            "unbonding_tx": self.unbonding_tx.serialize().hex(),
            "unbonding_value": self.unbonding_value,
            "unbonding_slashing_tx": self.unbonding_slashing_tx.serialize().hex(),
            "delegator_unbonding_slashing_sig": sign_script_path(
                self.staker_sk, self.unbonding_slashing_tx, 0, [self.unbonding_info.output],
                self.unbonding_info.slashing_script).hex(),
        }
        if inclusion_proof is not None:
            body["inclusion_proof"] = inclusion_proof
        return body

    def slashing_sighash(self) -> bytes:
        """Sighash of the staking slashing tx (slashing leaf of the staking output)."""
        return taproot_sighash(self.slashing_tx, 0, [self.info.output], SIGHASH_DEFAULT,
                               leaf_script=self.info.slashing_script)

    def unbonding_slashing_sighash(self) -> bytes:
        """Sighash of the unbonding slashing tx (slashing leaf of the unbonding output)."""
        return taproot_sighash(self.unbonding_slashing_tx, 0, [self.unbonding_info.output], SIGHASH_DEFAULT,
                               leaf_script=self.unbonding_info.slashing_script)

    def covenant_sigs_msg(self, i: int, sk: bytes | None = None) -> dict[str, Any]:
        """``add_covenant_sigs`` body of covenant member ``i`` (``sk`` overrides the signing key)."""
        sk = sk or covenant_secret(i)
        slash_msg, unb_slash_msg = self.slashing_sighash(), self.unbonding_slashing_sighash()
        return {
            "pk": xonly_from_secret(covenant_secret(i)).hex(),
            "staking_tx_hash": self.staking_tx_hash,
            "slashing_tx_sigs": [encrypt_sign(sk, fp, slash_msg).serialize().hex() for fp in self.fps],
            "unbonding_tx_sig": sign_script_path(sk, self.unbonding_tx, 0, [self.info.output],
                                                 self.info.unbonding_script).hex(),
            "slashing_unbonding_tx_sigs": [encrypt_sign(sk, fp, unb_slash_msg).serialize().hex() for fp in self.fps],
        }

    def signed_unbonding_tx(self) -> Tx:
        """The unbonding tx with the staker + covenant-quorum witness (kernel-verified)."""
        p = self.params
        cov = {xonly_from_secret(covenant_secret(i)): sign_script_path(
            covenant_secret(i), self.unbonding_tx, 0, [self.info.output], self.info.unbonding_script)
            for i in range(p.covenant_quorum)}
        staker_sig = sign_script_path(self.staker_sk, self.unbonding_tx, 0, [self.info.output],
                                      self.info.unbonding_script)
        wit = unbonding_witness(p.covenant_pks, cov, p.covenant_quorum, staker_sig, self.info.unbonding_script,
                                self.info.control_block(self.info.unbonding_script))
        tx = Tx(2, [TxIn(self.staking_outpoint, witness=wit)], self.unbonding_tx.outputs, 0)
        assert tx.txid() == self.unbonding_tx.txid()
        assert kernel_verify(tx, [self.info.output]), "unbonding spend rejected by libbitcoinkernel"
        return tx

    def signed_withdraw_tx(self, *, after_unbonding: bool) -> Tx:
        """Timelock-path withdrawal of the staking (or unbonding) output, kernel-verified."""
        if after_unbonding:
            info, outpoint, value, lock = (self.unbonding_info, self.unbonding_outpoint, self.unbonding_value,
                                           self.params.unbonding_time_blocks)
        else:
            info, outpoint, value, lock = self.info, self.staking_outpoint, self.value, self.staking_time
        tx = build_withdraw_tx(outpoint, value, lock, p2tr_script(self.staker_pk), 500)
        sig = sign_script_path(self.staker_sk, tx, 0, [info.output], info.timelock_script)
        tx.inputs[0].witness = timelock_witness(sig, info.timelock_script, info.control_block(info.timelock_script))
        assert kernel_verify(tx, [info.output]), "withdrawal spend rejected by libbitcoinkernel"
        return tx
