"""Following the backend: new blocks, reorgs, reorgs across a restart, too-deep reorgs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cp_memchain import MemChain

from checkpoint.errors import InvalidInputError, ReorgTooDeepError
from checkpoint.service import CheckpointService


@dataclass(frozen=True)
class _Params:  # only used for the store's config fingerprint in these follower-only tests
    tag: bytes = b"bbn0"


def _svc(chain: MemChain, path, **kw) -> CheckpointService:
    return CheckpointService(chain, None, path, _Params(), 3, None, 0.05, **kw)  # type: ignore[arg-type]


def test_follows_new_blocks(tmp_path):
    chain = MemChain()
    chain.mine(5)
    svc = _svc(chain, tmp_path / "s.sqlite")
    rep = svc.follow()
    assert rep.connected == chain.best and svc.store.tip().height == 5
    chain.mine(2)
    assert svc.follow().connected == chain.best[6:]
    assert svc.follow().connected == []


def test_reorg_detected_and_new_branch_followed(tmp_path):
    chain = MemChain()
    chain.mine(5)
    svc = _svc(chain, tmp_path / "s.sqlite")
    svc.follow()
    old = list(chain.best)
    fork_parent = chain.best[3]
    new = chain.mine(4, parent=fork_parent)  # heights 4..7 beat 4..5
    rep = svc.follow()
    assert rep.disconnected == [old[5], old[4]]
    assert rep.connected == new
    assert [svc.store.block_at(h).hash for h in range(8)] == chain.best


def test_reorg_across_restart(tmp_path):
    chain = MemChain()
    chain.mine(6)
    svc = _svc(chain, tmp_path / "s.sqlite")
    svc.follow()
    svc.close()
    old_tip = chain.best[-1]
    chain.mine(5, parent=chain.best[2])   # fork below the stored tip while "down"
    svc = _svc(chain, tmp_path / "s.sqlite")   # fresh process, same SQLite file
    rep = svc.follow()
    assert old_tip in rep.disconnected and len(rep.disconnected) == 4
    assert svc.store.tip().hash == chain.best[-1] and svc.store.tip().height == 7


def test_reorg_deeper_than_stored_window_is_an_error(tmp_path):
    chain = MemChain()
    chain.mine(4)
    svc = _svc(chain, tmp_path / "s.sqlite", start_height=3)
    svc.follow()
    chain.mine(6, parent=chain.best[1])
    with pytest.raises(ReorgTooDeepError):
        svc.follow()


def test_bounded_blocks_per_round(tmp_path):
    chain = MemChain()
    chain.mine(9)
    svc = _svc(chain, tmp_path / "s.sqlite", max_blocks_per_run=4)
    assert len(svc.follow().connected) == 4
    assert len(svc.follow().connected) == 4
    assert len(svc.follow().connected) == 2


def test_bad_configuration_is_refused(tmp_path):
    chain = MemChain()
    with pytest.raises(InvalidInputError, match="k must be"):
        CheckpointService(chain, None, tmp_path / "a", _Params(), 0, None, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="poll_interval"):
        CheckpointService(chain, None, tmp_path / "a", _Params(), 2, None, 0)  # type: ignore[arg-type]
