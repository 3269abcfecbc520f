"""In-memory Bitcoin block source used only until ``regtest.EmbeddedNode`` is available.

It serves real serialized blocks (real merkle roots, real tx serialization) built
with python-bitcoinlib, with a tree of blocks and a movable best tip so reorgs
can be staged. It is a stand-in for the *backend*, never for the code under test.
"""

from __future__ import annotations

from bitcoin.core import (CBlock, CMutableTransaction, COutPoint, CTransaction, CTxIn, CTxOut, b2lx, lx)
from bitcoin.core.script import CScript


class MemChain:
    """A tiny block tree with a best chain (no PoW checks)."""

    def __init__(self) -> None:
        self.blocks: dict[str, CBlock] = {}
        self.parent: dict[str, str | None] = {}
        self.height: dict[str, int] = {}
        self.best: list[str] = []
        self._time = 1_700_000_000
        self._nonce = 0
        self.mine(1)

    # BitcoinBackend subset -------------------------------------------------
    def get_block_count(self) -> int:
        return len(self.best) - 1

    def get_best_block_hash(self) -> str:
        return self.best[-1]

    def get_block_hash(self, h: int) -> str:
        if not 0 <= h < len(self.best):
            raise ValueError(f"height {h} out of range")
        return self.best[h]

    def get_block(self, hash_hex: str) -> bytes:
        return self.blocks[hash_hex].serialize()

    def get_block_header(self, hash_hex: str) -> bytes:
        return self.blocks[hash_hex].get_header().serialize()

    # staging ---------------------------------------------------------------
    def mine(self, n: int, txs: list[CTransaction] | None = None, parent: str | None = None) -> list[str]:
        """Mine n blocks on ``parent`` (default: best tip); txs go into the first one."""
        out = []
        prev = parent if parent is not None else (self.best[-1] if self.best else None)
        for i in range(n):
            h = 0 if prev is None else self.height[prev] + 1
            self._nonce += 1
            cb = CMutableTransaction(
                [CTxIn(COutPoint(), CScript([h, self._nonce]))], [CTxOut(50_0000_0000, CScript([1]))])
            vtx = [CTransaction.from_tx(cb)] + (list(txs) if i == 0 and txs else [])
            self._time += 1
            blk = CBlock(nVersion=0x20000000, hashPrevBlock=lx(prev) if prev else b"\0" * 32,
                         nTime=self._time, nBits=0x207FFFFF, nNonce=self._nonce, vtx=vtx)
            blk = CBlock(nVersion=blk.nVersion, hashPrevBlock=blk.hashPrevBlock,
                         hashMerkleRoot=blk.calc_merkle_root(), nTime=blk.nTime, nBits=blk.nBits,
                         nNonce=blk.nNonce, vtx=vtx)
            bh = b2lx(blk.GetHash())
            self.blocks[bh], self.parent[bh], self.height[bh] = blk, prev, h
            out.append(bh)
            prev = bh
        # longest chain wins (ties keep the current best)
        if self.height[prev] > self.get_block_count():
            self._set_best(prev)
        return out

    def _set_best(self, tip: str) -> None:
        chain = []
        cur: str | None = tip
        while cur is not None:
            chain.append(cur)
            cur = self.parent[cur]
        self.best = chain[::-1]
