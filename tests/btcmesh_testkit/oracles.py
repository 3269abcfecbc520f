"""Independent script-verification oracles for the tests.

* Bitcoin Core's interpreter through py-bitcoinkernel (libbitcoinkernel).
* btclib's pure-Python script engine (its own sighash + BIP-340 code).
Neither shares code with btc_staking: both get only raw transaction bytes and spent outputs."""

from __future__ import annotations

import pbk
from btclib.exceptions import BTClibValueError
from btclib.script.engine import ALL_FLAGS, verify_input
from btclib.tx.tx import Tx as BTx
from btclib.tx.tx_out import TxOut as BTxOut

from btc_staking.tx import Tx, TxOut


def kernel_verify(tx: Tx, prevouts: list[TxOut], index: int = 0) -> bool:
    """Bitcoin Core consensus verification (all flags incl. taproot, CSV) of one input."""
    ptx = pbk.Transaction(tx.serialize())
    spent = [pbk.TransactionOutput(pbk.ScriptPubkey(o.script_pubkey), o.value) for o in prevouts]
    pre = pbk.script.PrecomputedTransactionData(ptx, spent)
    spk = pbk.ScriptPubkey(prevouts[index].script_pubkey)
    try:
        return bool(spk.verify(prevouts[index].value, ptx, pre, index, pbk.ScriptVerificationFlags.ALL))
    except pbk.ScriptVerifyException:
        return False


def btclib_verify(tx: Tx, prevouts: list[TxOut], index: int = 0) -> bool:
    """btclib script engine verification of one input (raises nothing, returns bool)."""
    btx = BTx.parse(tx.serialize())
    bprev = [BTxOut(o.value, o.script_pubkey, check_validity=False) for o in prevouts]
    try:
        verify_input(bprev, btx, index, ALL_FLAGS)
        return True
    except (BTClibValueError, IndexError, ValueError):
        return False


def both_accept(tx: Tx, prevouts: list[TxOut], index: int = 0) -> bool:
    """True iff both oracles accept; asserts they agree."""
    k, b = kernel_verify(tx, prevouts, index), btclib_verify(tx, prevouts, index)
    assert k == b, f"oracles disagree: kernel={k} btclib={b}"
    return k
