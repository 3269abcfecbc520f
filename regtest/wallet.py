"""`Wallet`: a tiny key-based funding wallet over any `BitcoinBackend` (btcd has no wallet).

One secret, one output script: BIP-86 P2TR key path (default) or P2WPKH. The wallet learns its coins by scanning
blocks from the backend, incrementally and reorg-aware: each scanned block keeps an undo record,
so when the backend's chain no longer contains a block we scanned, the wallet rolls back to the
fork point and rescans. Coinbase outputs become spendable at 100 confirmations (regtest
consensus). Coins spent by a mempool transaction, or reserved by `Wallet.fund`, are never chosen.

    wallet = Wallet(backend, secret)
    backend.mine_blocks(101, wallet.script_pubkey)
    wallet.scan()
    tx = wallet.fund([TxOut(50_000, staking_pk_script)], fee_rate=2)
    backend.send_raw_transaction(tx.serialize())
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from io import BytesIO
from typing import Callable, Sequence

from coincurve import PrivateKey

from btc_staking.keys import check_secret, pubkey_from_secret, xonly_from_secret
from btc_staking.params import is_dust
from btc_staking.signing import bip86_output_key, sign_key_path
from btc_staking.tx import (
    OutPoint,
    Tx,
    TxIn,
    TxOut,
    hash256,
    p2pkh_script,
    p2tr_script,
    p2wpkh_script,
    read_compact_size,
    ser_string,
)

from .address import BECH32_CHARSET, BECH32M_CONST, bech32_polymod, hrp_expand
from .backend import BackendError, BitcoinBackend

__all__ = [
    "Wallet",
    "Utxo",
    "WalletError",
    "InsufficientFundsError",
    "DustOutputError",
    "COINBASE_MATURITY",
    "parse_block",
    "block_hash",
    "decode_segwit_address",
    "bip143_sighash",
]

COINBASE_MATURITY = 100
_HRPS = {"regtest": "bcrt", "testnet": "tb", "signet": "tb", "mainnet": "bc"}


class WalletError(ValueError):
    """The wallet cannot do what was asked (bad outputs, bad fee rate, unknown tx...)."""


class InsufficientFundsError(WalletError):
    """Spendable (mature, unreserved) coins do not cover outputs + fee."""


class DustOutputError(WalletError):
    """A requested output is below the dust threshold."""


# ------------------------------------------------------------------------------------- parsing
def _skip(s: BytesIO, n: int) -> None:
    if len(s.read(n)) != n:
        raise WalletError("block truncated")


def _tx_span(s: BytesIO) -> None:
    """Advance ``s`` past one serialized transaction (segwit or legacy)."""
    _skip(s, 4)
    n_in = read_compact_size(s)
    segwit = False
    if n_in == 0:
        flag = s.read(1)
        if flag != b"\x01":
            raise WalletError("bad segwit flag in block transaction")
        segwit = True
        n_in = read_compact_size(s)
    for _ in range(n_in):
        _skip(s, 36)
        _skip(s, read_compact_size(s))
        _skip(s, 4)
    for _ in range(read_compact_size(s)):
        _skip(s, 8)
        _skip(s, read_compact_size(s))
    if segwit:
        for _ in range(n_in):
            for _ in range(read_compact_size(s)):
                _skip(s, read_compact_size(s))
    _skip(s, 4)


def parse_block(raw: bytes) -> tuple[bytes, list[Tx]]:
    """Split a raw block into its 80-byte header and parsed transactions."""
    if len(raw) < 81:
        raise WalletError("block too short")
    s = BytesIO(raw)
    header = s.read(80)
    txs = []
    for _ in range(read_compact_size(s)):
        start = s.tell()
        _tx_span(s)
        txs.append(Tx.parse(raw[start : s.tell()]))
    if s.read(1):
        raise WalletError("trailing bytes after block transactions")
    return header, txs


def block_hash(header: bytes) -> str:
    """Display-order hash of an 80-byte header."""
    return hash256(header[:80])[::-1].hex()


def decode_segwit_address(address: str, hrp: str) -> tuple[int, bytes]:
    """Decode a BIP-173/350 address → (witness version, program); WalletError if invalid."""
    addr = address.lower()
    if address != addr and address != address.upper():
        raise WalletError("mixed-case address")
    pos = addr.rfind("1")
    if pos < 1 or addr[:pos] != hrp or len(addr) - pos < 7:
        raise WalletError(f"not a {hrp} segwit address: {address!r}")
    try:
        data = [BECH32_CHARSET.index(c) for c in addr[pos + 1 :]]
    except ValueError as exc:
        raise WalletError(f"invalid bech32 character in {address!r}") from exc
    const = bech32_polymod(hrp_expand(hrp) + data)
    version = data[0]
    if const != (1 if version == 0 else BECH32M_CONST):
        raise WalletError(f"bad checksum in {address!r}")
    acc, bits, prog = 0, 0, []
    for v in data[1:-6]:
        acc = (acc << 5) | v
        bits += 5
        if bits >= 8:
            bits -= 8
            prog.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise WalletError(f"bad padding in {address!r}")
    program = bytes(prog)
    if version > 16 or not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise WalletError(f"invalid witness program in {address!r}")
    return version, program


# -------------------------------------------------------------------------------------- wallet
@dataclass(frozen=True)
class Utxo:
    """An unspent wallet output."""

    outpoint: OutPoint
    value: int
    height: int
    coinbase: bool

    @property
    def txid_hex(self) -> str:
        return self.outpoint.txid[::-1].hex()


@dataclass
class _BlockUndo:
    hash: str
    created: list[OutPoint]
    spent: list[Utxo]
    watched: list[str]
    txids: frozenset[str] = frozenset()


class _ChainMoved(Exception):
    """The backend's chain changed under a scan (a fetched block does not extend the last one)."""


_DUMMY_SIG = b"\x01" * 64
_DUMMY_DER = b"\x01" * 72  # the largest low-S DER signature + sighash byte (fees never fall short)
SIGHASH_ALL = 1


def bip143_sighash(tx: Tx, index: int, script_code: bytes, amount: int, hash_type: int = SIGHASH_ALL) -> bytes:
    """BIP-143 (segwit v0) signature hash, SIGHASH_ALL only."""
    if hash_type != SIGHASH_ALL:
        raise WalletError("only SIGHASH_ALL is supported")
    txin = tx.inputs[index]
    prevouts = hash256(b"".join(i.prevout.serialize() for i in tx.inputs))
    sequences = hash256(b"".join(i.sequence.to_bytes(4, "little") for i in tx.inputs))
    outputs = hash256(b"".join(o.serialize() for o in tx.outputs))
    preimage = (
        tx.version.to_bytes(4, "little", signed=True)
        + prevouts
        + sequences
        + txin.prevout.serialize()
        + ser_string(script_code)
        + amount.to_bytes(8, "little")
        + txin.sequence.to_bytes(4, "little")
        + outputs
        + tx.locktime.to_bytes(4, "little")
        + hash_type.to_bytes(4, "little")
    )
    return hash256(preimage)


class Wallet:
    """Key-based BIP-86 P2TR wallet tracking its coins by scanning the backend's blocks."""

    def __init__(
        self,
        backend: BitcoinBackend,
        secret: bytes,
        network: str = "regtest",
        start_height: int = 0,
        verify: Callable[[Tx, list[TxOut]], None] | None = None,
        address_type: str = "p2tr",
    ) -> None:
        """``address_type``: "p2tr" (BIP-86 key path, default) or "p2wpkh" (BIP-143, ECDSA).
        ``verify(tx, prevouts)``, if given, checks every tx `fund` signs (e.g. a script
        interpreter oracle) and raises to refuse it; nothing is reserved then."""
        check_secret(secret)
        if address_type not in ("p2tr", "p2wpkh"):
            raise WalletError(f"address_type must be 'p2tr' or 'p2wpkh', got {address_type!r}")
        if network not in _HRPS:
            raise WalletError(f"unknown network {network!r}")
        self.backend = backend
        self.network = network
        self._secret = bytes(secret)
        self.address_type = address_type
        self.internal_key = xonly_from_secret(self._secret)
        self.output_key = bip86_output_key(self.internal_key)
        self.pubkey = pubkey_from_secret(self._secret).format(compressed=True)
        if address_type == "p2tr":
            self.script_pubkey = p2tr_script(self.output_key)
        else:
            self.script_pubkey = p2wpkh_script(self.pubkey)
        self._start = start_height
        self._verify = verify
        self._blocks: list[_BlockUndo] = []  # index i = height start + i
        self._utxos: dict[OutPoint, Utxo] = {}
        self._reserved: set[OutPoint] = set()
        self._mempool_spent: set[OutPoint] = set()
        self._mempool_seen: dict[str, Tx] = {}
        self._watch_heights: dict[str, int | None] = {}
        self.reorgs = 0

    @property
    def address(self) -> str:
        """The wallet's bech32m address."""
        from .address import script_to_address

        return script_to_address(self.script_pubkey, self.network)

    @property
    def height(self) -> int:
        """Height of the last scanned block (start_height - 1 before any scan)."""
        return self._start + len(self._blocks) - 1

    # -- scanning ------------------------------------------------------------------------------
    def scan(self, max_attempts: int = 5) -> int:
        """Catch up with the backend (rolling back over reorgs); returns the scanned height.
        A reorg racing the scan is noticed (each block must extend the previous one) and the scan
        restarts from the new fork point, at most ``max_attempts`` times."""
        for _ in range(max_attempts):
            try:
                self._scan_once()
            except _ChainMoved:
                continue
            self._scan_mempool()
            return self.height
        raise WalletError(f"the backend's chain kept changing during {max_attempts} scan attempts")

    def _scan_once(self) -> None:
        tip = self.backend.get_block_count()
        # find the fork point: the highest scanned block still on the backend's chain
        rolled_back = False
        while self._blocks:
            h = self.height
            if h <= tip and self.backend.get_block_hash(h) == self._blocks[-1].hash:
                break
            self._undo_last()
            rolled_back = True
        self.reorgs += rolled_back
        for h in range(max(self.height + 1, self._start), tip + 1):
            hash_hex = self.backend.get_block_hash(h)
            self._apply(h, hash_hex, self.backend.get_block(hash_hex))

    def _apply(self, height: int, hash_hex: str, raw: bytes) -> None:
        header, txs = parse_block(raw)
        if block_hash(header) != hash_hex:
            raise WalletError(f"backend returned block {block_hash(header)} for {hash_hex}")
        if self._blocks and header[4:36][::-1].hex() != self._blocks[-1].hash:
            raise _ChainMoved(hash_hex)
        undo = _BlockUndo(hash_hex, [], [], [], frozenset(t.txid_hex() for t in txs))
        for i, tx in enumerate(txs):
            txid = tx.txid_hex()
            if i > 0:
                for txin in tx.inputs:
                    spent = self._utxos.pop(txin.prevout, None)
                    if spent is not None:
                        undo.spent.append(spent)
                        self._reserved.discard(txin.prevout)
            for vout, out in enumerate(tx.outputs):
                if out.script_pubkey == self.script_pubkey and out.value > 0:
                    op = OutPoint(tx.txid(), vout)
                    self._utxos[op] = Utxo(op, out.value, height, i == 0)
                    undo.created.append(op)
            if txid in self._watch_heights and self._watch_heights[txid] is None:
                self._watch_heights[txid] = height
                undo.watched.append(txid)
        self._blocks.append(undo)

    def _undo_last(self) -> None:
        undo = self._blocks.pop()
        for op in undo.created:
            self._utxos.pop(op, None)
        for utxo in undo.spent:
            self._utxos[utxo.outpoint] = utxo
        for txid in undo.watched:
            self._watch_heights[txid] = None

    def _scan_mempool(self) -> None:
        pool = set(self.backend.get_mempool())
        self._mempool_seen = {t: tx for t, tx in self._mempool_seen.items() if t in pool}
        for txid in pool - set(self._mempool_seen):
            try:
                self._mempool_seen[txid] = Tx.parse(self.backend.get_raw_transaction(txid))
            except BackendError:  # evicted or mined between the two calls
                continue
        self._mempool_spent = {i.prevout for tx in self._mempool_seen.values() for i in tx.inputs}

    # -- watching ------------------------------------------------------------------------------
    def watch(self, txid_hex: str) -> None:
        """Track the confirmation height of any txid (see `tx_height`), mined already or not."""
        if txid_hex in self._watch_heights:
            return
        self._watch_heights[txid_hex] = None
        for i, undo in enumerate(self._blocks):
            if txid_hex in undo.txids:
                self._watch_heights[txid_hex] = self._start + i
                undo.watched.append(txid_hex)
                break

    def tx_height(self, txid_hex: str) -> int | None:
        """Height of the block that confirmed a watched tx on the current chain, None if unconfirmed."""
        if txid_hex not in self._watch_heights:
            raise WalletError(f"tx {txid_hex} is not watched")
        return self._watch_heights[txid_hex]

    def confirmations(self, txid_hex: str) -> int:
        """Confirmations of a watched tx (0 when unconfirmed)."""
        h = self.tx_height(txid_hex)
        return 0 if h is None else self.height - h + 1

    def in_mempool(self, txid_hex: str) -> bool:
        """True if the last scan saw the tx in the backend's mempool."""
        return txid_hex in self._mempool_seen

    # -- coins ---------------------------------------------------------------------------------
    def utxos(self) -> list[Utxo]:
        """All known unspent wallet outputs (mature or not, reserved or not)."""
        return sorted(self._utxos.values(), key=lambda u: (u.height, u.outpoint.txid, u.outpoint.vout))

    def spendable(self) -> list[Utxo]:
        """Mature coins not spent in the mempool and not reserved by `fund`."""
        next_height = self.height + 1
        return [
            u
            for u in self.utxos()
            if u.outpoint not in self._reserved
            and u.outpoint not in self._mempool_spent
            and (not u.coinbase or next_height - u.height >= COINBASE_MATURITY)
        ]

    def balance(self, spendable_only: bool = True) -> int:
        """Sum of spendable (default) or of all known coins, in sat."""
        return sum(u.value for u in (self.spendable() if spendable_only else self.utxos()))

    def release(self, tx: Tx) -> None:
        """Un-reserve the inputs of a funded tx that will not be broadcast."""
        for txin in tx.inputs:
            self._reserved.discard(txin.prevout)

    # -- funding -------------------------------------------------------------------------------
    def fund(
        self,
        outputs: Sequence[TxOut],
        fee_rate: float,
        *,
        change_script: bytes | None = None,
        version: int = 2,
        locktime: int = 0,
    ) -> Tx:
        """Build and sign a tx paying ``outputs`` (largest-first coin selection, change back to the
        wallet unless it would be dust). Its inputs are reserved until spent on chain or `release`d."""
        outs = list(outputs)
        if not outs:
            raise WalletError("need at least one output")
        for o in outs:
            if not isinstance(o, TxOut):
                raise WalletError(f"outputs must be TxOut, got {type(o).__name__}")
            if is_dust(o.value, o.script_pubkey):
                raise DustOutputError(f"output of {o.value} sat to {o.script_pubkey.hex()} is dust")
        if not isinstance(fee_rate, (int, float)) or isinstance(fee_rate, bool) or not 0 < fee_rate < 100_000:
            raise WalletError(f"fee_rate must be a positive number of sat/vB, got {fee_rate!r}")
        change_spk = self.script_pubkey if change_script is None else bytes(change_script)
        target = sum(o.value for o in outs)
        chosen: list[Utxo] = []
        total = 0
        coins = sorted(self.spendable(), key=lambda u: -u.value)
        for coin in coins:
            chosen.append(coin)
            total += coin.value
            fee_no_change = self._fee(chosen, outs, fee_rate)
            if total < target + fee_no_change:
                continue
            with_change = outs + [TxOut(0, change_spk)]
            fee_change = self._fee(chosen, with_change, fee_rate)
            change = total - target - fee_change
            if change > 0 and not is_dust(change, change_spk):
                final = outs + [TxOut(change, change_spk)]
            else:
                final = outs  # the remainder goes to the fee
            tx = Tx(version, [TxIn(u.outpoint, sequence=0xFFFFFFFE) for u in chosen], final, locktime)
            self._sign(tx, chosen)
            if self._verify is not None:
                self._verify(tx, [TxOut(u.value, self.script_pubkey) for u in chosen])
            self._reserved.update(u.outpoint for u in chosen)
            return tx
        have = sum(u.value for u in coins)
        raise InsufficientFundsError(
            f"need {target} sat + fee at {fee_rate} sat/vB, have {have} sat spendable "
            f"({len(coins)} coins; {self.balance(spendable_only=False)} sat incl. immature/reserved)"
        )

    def _fee(self, coins: list[Utxo], outs: list[TxOut], fee_rate: float) -> int:
        witness = [_DUMMY_SIG] if self.address_type == "p2tr" else [_DUMMY_DER, self.pubkey]
        dummy = Tx(2, [TxIn(u.outpoint, witness=list(witness)) for u in coins], outs, 0)
        return math.ceil(dummy.vsize() * fee_rate)

    def _sign(self, tx: Tx, coins: list[Utxo]) -> None:
        prevouts = [TxOut(u.value, self.script_pubkey) for u in coins]
        for i in range(len(tx.inputs)):
            if self.address_type == "p2tr":
                tx.inputs[i].witness = [sign_key_path(self._secret, tx, i, prevouts)]
            else:
                digest = bip143_sighash(tx, i, p2pkh_script(self.pubkey), prevouts[i].value)
                der = PrivateKey(self._secret).sign(digest, hasher=None)  # low-S DER (libsecp256k1)
                tx.inputs[i].witness = [der + bytes([SIGHASH_ALL]), self.pubkey]

    def prevouts(self, tx: Tx) -> list[TxOut]:
        """The spent outputs of a tx this wallet funded (for oracle checks)."""
        out = []
        for txin in tx.inputs:
            u = self._utxos.get(txin.prevout)
            if u is None:
                raise WalletError(f"input {txin.prevout.txid[::-1].hex()}:{txin.prevout.vout} is not a wallet coin")
            out.append(TxOut(u.value, self.script_pubkey))
        return out

    def send(self, outputs: Sequence[TxOut], fee_rate: float) -> str:
        """Fund, sign and broadcast; returns the txid (inputs released if the node refuses it)."""
        tx = self.fund(outputs, fee_rate)
        try:
            txid = self.backend.send_raw_transaction(tx.serialize())
        except Exception:
            self.release(tx)
            raise
        self._mempool_seen[txid] = tx
        self._mempool_spent.update(i.prevout for i in tx.inputs)
        return txid
