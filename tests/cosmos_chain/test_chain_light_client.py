"""``btc_light_client`` through cosmpy-signed txs on a ChainApp: linkage, PoW, bits, fork choice,
depth and idempotence, with real regtest-style headers (PoW ground at bits 0x207fffff)."""

from __future__ import annotations

import pytest

from btc_staking.headers import BlockHeader, check_proof_of_work
from chain_helpers import BtcChain, TestChain, make_genesis, mine_header, wallet

pytestmark = pytest.mark.timeout(120)

LC = "btc_light_client"
RELAYER = wallet("relayer")


def _start(base_height: int = 0) -> tuple[BtcChain, TestChain]:
    btc = BtcChain(base_height=base_height)
    return btc, TestChain(make_genesis([RELAYER], btc, None))


def _insert(chain: TestChain, blocks) -> dict:
    return chain.ok(RELAYER, LC, {"insert_headers": {"headers": [b.raw for b in blocks]}})


def test_base_header_is_the_tip_at_genesis():
    btc, chain = _start(base_height=100)
    base = btc.tip
    assert chain.query(LC, {"tip": {}}) == {"height": 100, "hash": base.hash, "work": str(base.header.work)}
    assert chain.query(LC, {"header": {"height": 100}}) == {"height": 100, "hash": base.hash, "header": base.raw}
    assert chain.query(LC, {"header": {"height": 99}})["hash"] is None
    assert chain.query(LC, {"depth": {"hash": base.hash}}) == {"depth": 0}


def test_linked_headers_extend_the_tip_and_set_depths():
    btc, chain = _start()
    blocks = btc.mine(n=3)
    out = _insert(chain, blocks)
    assert out == {"tip_height": 3, "tip_hash": blocks[-1].hash, "inserted": 3}
    work = sum(b.header.work for b in btc.best)
    assert chain.query(LC, {"tip": {}}) == {"height": 3, "hash": blocks[-1].hash, "work": str(work)}
    for b in btc.best:
        assert chain.query(LC, {"header": {"height": b.height}}) == {"height": b.height, "hash": b.hash,
                                                                      "header": b.raw}
        assert chain.query(LC, {"header_by_hash": {"hash": b.hash}}) == {
            "height": b.height, "hash": b.hash, "header": b.raw, "main_chain": True}
        assert chain.query(LC, {"depth": {"hash": b.hash}}) == {"depth": 3 - b.height}
    # header hashes are display order: the header's own prev_hash field is the reversed parent hash
    assert BlockHeader.parse(bytes.fromhex(blocks[1].raw)).prev_hash[::-1].hex() == blocks[0].hash


def test_reinserting_known_headers_is_idempotent():
    btc, chain = _start()
    blocks = btc.mine(n=2)
    _insert(chain, blocks)
    before = chain.module_state(LC)
    out = _insert(chain, blocks)
    assert out == {"tip_height": 2, "tip_hash": blocks[-1].hash, "inserted": 0}
    assert chain.module_state(LC) == before
    # a batch overlapping the known chain only adds the new ones
    more = btc.mine(n=2)
    assert _insert(chain, blocks[1:] + more) == {"tip_height": 4, "tip_hash": more[-1].hash, "inserted": 2}


def test_unknown_parent_is_rejected_and_nothing_is_written():
    btc, chain = _start()
    blocks = btc.mine(n=3)
    before = chain.module_state(LC)
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": [blocks[1].raw, blocks[2].raw]}})
    assert "is not known to the light client" in log and blocks[0].hash in log
    assert chain.module_state(LC) == before
    # headers not linked to each other inside one batch
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": [blocks[0].raw, blocks[2].raw]}})
    assert "is not known to the light client" in log
    assert chain.module_state(LC) == before


def test_header_failing_pow_is_rejected_with_its_valid_predecessors():
    btc, chain = _start()
    good = btc.mine(n=1)[0]
    # find a nonce whose hash misses the (easy) regtest target
    nonce = 0
    while True:
        bad = BlockHeader(0x20000000, good.header.hash(), b"\x11" * 32, good.header.timestamp + 600, 0x207FFFFF, nonce)
        if not check_proof_of_work(bad):
            break
        nonce += 1
        assert nonce < 1000
    before_hash = chain.app.info()[1]
    before = chain.module_state(LC)
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": [good.raw, bad.serialize().hex()]}})
    assert "fails proof of work" in log and bad.hash_hex() in log
    assert chain.module_state(LC) == before  # the valid first header was not kept either
    assert chain.query(LC, {"header_by_hash": {"hash": good.hash}})["hash"] is None
    assert chain.app.info()[1] != before_hash  # only the fee and sequence moved (SDK semantics)


def test_bits_must_equal_the_parents():
    btc, chain = _start()
    parent = btc.tip
    harder = mine_header(parent.header.hash(), b"\x22" * 32, parent.header.timestamp + 600, bits=0x2000FFFF)
    assert check_proof_of_work(harder)  # valid PoW for its own bits
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": [harder.serialize().hex()]}})
    assert "differ from the parent's" in log
    # bits above the regtest proof-of-work limit are refused too
    easy = BlockHeader(0x20000000, parent.header.hash(), b"\x33" * 32, parent.header.timestamp + 600, 0x2100FFFF, 0)
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": [easy.serialize().hex()]}})
    assert "bits" in log


def test_fork_choice_follows_the_most_work_and_keeps_forks():
    btc, chain = _start()
    main = btc.mine(n=3)  # heights 1..3
    _insert(chain, main)
    fork = btc.mine_on(main[0], n=2)  # heights 2..3: same work as main, seen later → not the tip
    assert _insert(chain, fork) == {"tip_height": 3, "tip_hash": main[-1].hash, "inserted": 2}
    assert chain.query(LC, {"depth": {"hash": fork[-1].hash}}) == {"depth": -1}
    assert chain.query(LC, {"header_by_hash": {"hash": fork[-1].hash}})["main_chain"] is False
    longer = btc.mine_on(fork[-1], n=1)  # height 4 on the fork: more work → reorg
    assert _insert(chain, longer) == {"tip_height": 4, "tip_hash": longer[0].hash, "inserted": 1}
    btc.reorg_to(longer[0])
    for b in btc.best:
        assert chain.query(LC, {"header": {"height": b.height}})["hash"] == b.hash
    for old in main[1:]:
        assert chain.query(LC, {"depth": {"hash": old.hash}}) == {"depth": -1}
    assert chain.query(LC, {"depth": {"hash": main[0].hash}}) == {"depth": 3}
    # the old branch comes back with more work
    back = btc.mine_on(main[-1], n=2)  # heights 4..5
    assert _insert(chain, back)["tip_hash"] == back[-1].hash
    btc.reorg_to(back[-1])
    assert [chain.query(LC, {"header": {"height": h}})["hash"] for h in range(6)] == [b.hash for b in btc.best]
    assert chain.query(LC, {"depth": {"hash": fork[0].hash}}) == {"depth": -1}


def test_reorg_rewrites_the_main_chain_index_from_the_fork_point():
    btc, chain = _start()
    main = btc.mine(n=4)
    _insert(chain, main)
    assert chain.query(LC, {"header": {"height": 4}})["hash"] == main[-1].hash
    fork = btc.mine_on(main[1], n=3)  # heights 3..5
    _insert(chain, fork)
    assert chain.query(LC, {"tip": {}})["height"] == 5
    assert chain.query(LC, {"header": {"height": 4}})["hash"] == fork[1].hash
    assert chain.query(LC, {"header": {"height": 6}})["hash"] is None


def test_queries_reject_bad_input_and_unknown_headers():
    btc, chain = _start()
    with pytest.raises(ValueError, match="unknown header"):
        chain.query(LC, {"depth": {"hash": "ab" * 32}})
    assert chain.query(LC, {"header_by_hash": {"hash": "ab" * 32}})["hash"] is None
    with pytest.raises(ValueError, match="64 hex"):
        chain.query(LC, {"depth": {"hash": "abc"}})
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": ["00" * 79]}})
    assert "80 bytes" in log
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": []}})
    assert "non-empty" in log


def test_light_client_without_base_refuses_headers():
    btc = BtcChain()
    chain = TestChain(make_genesis([RELAYER], None, None))
    assert chain.query(LC, {"tip": {}}) == {"height": None, "hash": None, "work": "0"}
    log = chain.fails(RELAYER, LC, {"insert_headers": {"headers": [btc.mine(n=1)[0].raw]}})
    assert "no base header" in log


def test_same_blocks_give_the_same_app_hash():
    btc, chain = _start()
    main = btc.mine(n=2)
    fork = btc.mine_on(main[0], n=2)
    txs = [chain.sign(RELAYER, LC, {"insert_headers": {"headers": [b.raw for b in main]}}),
           chain.sign(RELAYER, LC, {"insert_headers": {"headers": [b.raw for b in fork]}}, sequence_offset=1)]
    results, app_hash = chain.block(txs)
    assert [r.code for r in results] == [0, 0]
    other = TestChain(chain.genesis)
    other.time = chain.time - 5
    _, other_hash = other.block(txs)
    assert other_hash == app_hash
    assert chain.query(LC, {"tip": {}})["hash"] == fork[-1].hash


# ---------------------------------------------------------------- header reporters (issue 12)
def _start_with_reporters(reporters: list) -> tuple[BtcChain, TestChain]:
    btc = BtcChain()
    section = dict(btc.base(), params={"insert_headers_allow_list": [str(w.address()) for w in reporters]})
    return btc, TestChain(make_genesis([RELAYER, OUTSIDER], btc, None, btc_light_client=section))


OUTSIDER = wallet("outsider")


def test_allow_list_refuses_headers_from_other_accounts():
    """The hijack of issue 12: a funded outsider relays a heavier made-up chain; with the checkpoint
    service as the only reporter the tip stays on the real chain."""
    btc, chain = _start_with_reporters([RELAYER])
    assert chain.query(LC, {"params": {}}) == {"insert_headers_allow_list": [str(RELAYER.address())]}
    real = btc.mine(n=2)
    _insert(chain, real)
    fake = btc.mine_on(btc.best[0], n=4)  # a longer fork off the base
    log = chain.fails(OUTSIDER, LC, {"insert_headers": {"headers": [b.raw for b in fake]}})
    assert "not in the insert_headers_allow_list" in log
    assert chain.query(LC, {"tip": {}})["hash"] == real[-1].hash
    # the allowed reporter still may relay anything that is valid, forks included
    assert _insert(chain, fake)["tip_hash"] == fake[-1].hash


def test_empty_allow_list_is_permissionless():
    btc, chain = _start_with_reporters([])
    assert chain.query(LC, {"params": {}}) == {"insert_headers_allow_list": []}
    blocks = btc.mine(n=1)
    assert chain.ok(OUTSIDER, LC, {"insert_headers": {"headers": [blocks[0].raw]}})["tip_hash"] == blocks[0].hash


@pytest.mark.parametrize("bad", [["not-an-address"], "bbn1...", [str(RELAYER.address())] * 2])
def test_bad_allow_list_is_refused_at_genesis(bad):
    btc = BtcChain()
    section = dict(btc.base(), params={"insert_headers_allow_list": bad})
    with pytest.raises(ValueError, match="insert_headers_allow_list"):
        TestChain(make_genesis([RELAYER], btc, None, btc_light_client=section))


def test_devnet_and_demo_genesis_name_the_checkpoint_service_as_reporter():
    from btc_staking.params import regtest_default_params
    from btcmesh.demo import chain_genesis

    g = chain_genesis(regtest_default_params(), 0, bytes.fromhex(BtcChain().base()["base"]["header"]),
                      [str(RELAYER.address())], str(RELAYER.address()), header_reporters=[str(RELAYER.address())])
    assert g["btc_light_client"]["params"] == {"insert_headers_allow_list": [str(RELAYER.address())]}


def test_outsider_headers_are_refused_in_checktx_without_a_fee():
    """CheckTx already refuses an outsider's insert_headers (no mempool entry, no fee, no sequence)."""
    btc, chain = _start_with_reporters([RELAYER])
    tx = chain.sign(OUTSIDER, LC, {"insert_headers": {"headers": [b.raw for b in btc.mine(n=1)]}})
    res = chain.app.check_tx(tx)
    assert res.code != 0 and "not in the insert_headers_allow_list" in res.log
    again = chain.app.check_tx(tx)  # the check state kept no sequence bump or fee: same refusal, not a replay
    assert again.code == res.code and again.log == res.log
    ok = chain.sign(RELAYER, LC, {"insert_headers": {"headers": [b.raw for b in btc.best[1:]]}})
    assert chain.app.check_tx(ok).code == 0
