"""``btc_light_client``: a Bitcoin header chain kept in chain state (Babylon's BTC light client).

Genesis ``{"base": {"height": int, "header": hex80}}`` fixes a trusted base header. Relayers send
``insert_headers {headers: [hex80, ...]}`` (parent first). Every header must link to a known
header, meet the proof of work of its own ``bits`` (regtest limit) and carry the parent's
``bits`` (no retargeting on regtest). Forks are kept; the main chain ends at the header with the
most cumulative work (first seen wins a tie, as in Bitcoin Core).

Header reporters (Babylon's x/btclightclient ``insert_headers_allow_list`` param): genesis
``{"params": {"insert_headers_allow_list": [bech32, ...]}}`` lets only those accounts send
``insert_headers``. An empty list (the default) is permissionless: on regtest, where proof of work
is trivial, any funded account can then out-mine the real chain with made-up headers and move the
light client's tip off it. Devnets and the demo set the list to the checkpoint service's address.

Store (``m/btc_light_client/``)::

    base            {height, hash}
    params          {insert_headers_allow_list: [bech32, ...]}
    tip             {height, hash, work}            work = cumulative work from the base (decimal)
    reorg_floor     int                             lowest main-chain height rewritten since the registry
                                                    last looked (``take_reorg_floor``)
    h/<hash>        {header, height, work, parent}  every known header (display-order hash)
    main/<height>   <hash>                          main-chain index (height zero-padded to 10)

Other modules call :meth:`BtcLightClientModule.main_chain_header`, :meth:`~BtcLightClientModule.tip`
and :meth:`~BtcLightClientModule.depth` in-process.
"""

from __future__ import annotations

from typing import Any

from btc_staking.errors import InvalidHeaderError
from btc_staking.headers import BlockHeader, check_proof_of_work

from ..errors import ContractError, InvalidRequestError
from .base import Coin, Context, Module, register_module

__all__ = ["BtcLightClientModule", "LightClientError", "ReporterNotAllowedError", "MAX_HEADERS_PER_MSG"]

#: Upper bound on headers in one ``insert_headers`` message.
MAX_HEADERS_PER_MSG = 2_000


class LightClientError(ContractError):
    """A header or query the light client rejects."""


class ReporterNotAllowedError(LightClientError):
    """``insert_headers`` from an account not on the ``insert_headers_allow_list``."""


def _allow_list_arg(value: Any, prefix: str) -> list[str]:
    """Validate the ``insert_headers_allow_list`` param: a list of distinct bech32 account addresses."""
    from .auth import validate_address

    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequestError("btc_light_client genesis: params.insert_headers_allow_list must be a list")
    out: list[str] = []
    for a in value:
        try:
            validate_address(a, prefix)
        except ValueError as exc:
            raise InvalidRequestError(
                f"btc_light_client genesis: insert_headers_allow_list entry {a!r:.80}: {exc}") from exc
        if a in out:
            raise InvalidRequestError(f"btc_light_client genesis: insert_headers_allow_list repeats {a}")
        out.append(a)
    return out


def _main_key(height: int) -> str:
    return f"main/{height:010d}"


def _hash_arg(value: Any, name: str = "hash") -> str:
    """A display-order block hash argument: 64 hex chars, returned lowercase."""
    if not isinstance(value, str) or len(value) != 64:
        raise InvalidRequestError(f"{name} must be 64 hex characters (display order), got {value!r:.80}")
    try:
        bytes.fromhex(value)
    except ValueError as exc:
        raise InvalidRequestError(f"{name} is not hex: {value!r:.80}") from exc
    return value.lower()


def _height_arg(value: Any, name: str = "height") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequestError(f"{name} must be a non-negative integer, got {value!r:.80}")
    return value


def _parse_header(value: Any, i: int | None = None) -> BlockHeader:
    where = "header" if i is None else f"header {i}"
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise InvalidRequestError(f"{where} is not hex") from exc
    if len(raw) != 80:
        raise InvalidRequestError(f"{where} must be 80 bytes, got {len(raw)}")
    return BlockHeader.parse(raw)


@register_module
class BtcLightClientModule(Module):
    """The BTC header chain (see module docstring)."""

    name = "btc_light_client"

    # ------------------------------------------------------------------ genesis
    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        """``{"base": {"height", "header"}, "params": {...}}``; without a base the light client stays empty."""
        params = genesis.get("params") or {}
        if not isinstance(params, dict) or set(params) - {"insert_headers_allow_list"}:
            raise InvalidRequestError("btc_light_client genesis: params must be {insert_headers_allow_list: [...]}")
        allow = _allow_list_arg(params.get("insert_headers_allow_list"), ctx.app.prefix)
        self.store(ctx).set("params", {"insert_headers_allow_list": allow})
        base = genesis.get("base")
        if base is None:
            return
        if not isinstance(base, dict):
            raise InvalidRequestError("btc_light_client genesis: base must be {height, header}")
        height = _height_arg(base.get("height"), "btc_light_client genesis: base.height")
        header = _parse_header(base.get("header"))
        try:
            ok = check_proof_of_work(header)
        except InvalidHeaderError as exc:
            raise InvalidRequestError(f"btc_light_client genesis: base header: {exc}") from exc
        if not ok:
            raise InvalidRequestError("btc_light_client genesis: base header fails proof of work")
        st = self.store(ctx)
        h = header.hash_hex()
        work = header.work
        st.set("h/" + h, {"header": header.serialize().hex(), "height": height, "work": str(work), "parent": None})
        st.set(_main_key(height), h)
        st.set("base", {"height": height, "hash": h})
        st.set("tip", {"height": height, "hash": h, "work": str(work)})

    # ------------------------------------------------------------------ helpers for other modules
    def tip(self, ctx: Context) -> dict[str, Any] | None:
        """``{height, hash, work}`` of the main-chain tip, or None before a base is set."""
        return self.store(ctx).get("tip")

    def tip_height(self, ctx: Context) -> int | None:
        """Main-chain tip height (None without a base)."""
        t = self.tip(ctx)
        return None if t is None else int(t["height"])

    def header_record(self, ctx: Context, hash_hex: str) -> dict[str, Any] | None:
        """``{header, height, work, parent}`` of a known header (any branch), or None."""
        return self.store(ctx).get("h/" + hash_hex.lower())

    def is_main_chain(self, ctx: Context, hash_hex: str, height: int) -> bool:
        """Whether the header ``hash_hex`` at ``height`` is on the main chain."""
        return self.store(ctx).get(_main_key(height)) == hash_hex.lower()

    def main_chain_header(self, ctx: Context, hash_hex: str) -> tuple[int, BlockHeader] | None:
        """(height, header) if ``hash_hex`` is a main-chain header, else None."""
        rec = self.header_record(ctx, hash_hex)
        if rec is None or not self.is_main_chain(ctx, hash_hex, rec["height"]):
            return None
        return rec["height"], BlockHeader.parse(bytes.fromhex(rec["header"]))

    def main_chain_hash(self, ctx: Context, height: int) -> str | None:
        """Display hash of the main-chain header at ``height``, or None."""
        return self.store(ctx).get(_main_key(height))

    def depth(self, ctx: Context, hash_hex: str) -> int | None:
        """Tip has depth 0; -1 if known but off the main chain; None if unknown."""
        rec = self.header_record(ctx, hash_hex)
        if rec is None:
            return None
        if not self.is_main_chain(ctx, hash_hex, rec["height"]):
            return -1
        return int(self.tip(ctx)["height"]) - rec["height"]  # type: ignore[index]

    def params(self, ctx: Context) -> dict[str, Any]:
        """``{insert_headers_allow_list}`` (an empty list: anyone may report headers)."""
        return self.store(ctx).get("params") or {"insert_headers_allow_list": []}

    def check_reporter(self, ctx: Context, sender: str) -> None:
        """Raise :class:`ReporterNotAllowedError` unless ``sender`` may send ``insert_headers``."""
        allow = self.params(ctx)["insert_headers_allow_list"]
        if allow and sender not in allow:
            raise ReporterNotAllowedError(
                f"insert_headers: {sender} is not in the insert_headers_allow_list param "
                f"({len(allow)} reporter{'s' if len(allow) != 1 else ''} allowed)")

    def take_reorg_floor(self, ctx: Context) -> int | None:
        """Lowest height whose main-chain header changed in a reorg since the last call (and forget it);
        None without a reorg. The staking registry calls it once per block to find delegations whose
        staking tx's block left the main chain."""
        st = self.store(ctx)
        floor = st.get("reorg_floor")
        if floor is not None:
            st.delete("reorg_floor")
        return None if floor is None else int(floor)

    def check_message(self, ctx: Context, sender: str, msg: Any) -> None:
        """CheckTx: an ``insert_headers`` from an account off the allow list never reaches the mempool."""
        if isinstance(msg, dict) and "insert_headers" in msg:
            self.check_reporter(ctx, sender)

    # ------------------------------------------------------------------ execute
    def insert(self, ctx: Context, headers: list[BlockHeader]) -> dict[str, Any]:
        """Insert parsed headers (parent first); raises LightClientError on the first bad one."""
        st = self.store(ctx)
        tip = st.get("tip")
        if tip is None:
            raise LightClientError("light client has no base header (genesis btc_light_client.base missing)")
        tip_work = int(tip["work"])
        best: tuple[int, str, int] | None = None  # (work, hash, height) of the heaviest new header
        inserted = 0
        for i, header in enumerate(headers):
            h = header.hash_hex()
            if st.has("h/" + h):
                continue  # already known: idempotent
            parent_hash = header.prev_hash[::-1].hex()
            parent = st.get("h/" + parent_hash)
            if parent is None:
                raise LightClientError(f"header {i} ({h}): parent {parent_hash} is not known to the light client")
            parent_bits = BlockHeader.parse(bytes.fromhex(parent["header"])).bits
            if header.bits != parent_bits:
                raise LightClientError(
                    f"header {i} ({h}): bits {header.bits:#010x} differ from the parent's {parent_bits:#010x}")
            try:
                pow_ok = check_proof_of_work(header)
            except InvalidHeaderError as exc:
                raise LightClientError(f"header {i} ({h}): {exc}") from exc
            if not pow_ok:
                raise LightClientError(f"header {i} ({h}) fails proof of work")
            height = int(parent["height"]) + 1
            work = int(parent["work"]) + header.work
            st.set("h/" + h, {"header": header.serialize().hex(), "height": height, "work": str(work),
                              "parent": parent_hash})
            inserted += 1
            if work > tip_work and (best is None or work > best[0]):
                best = (work, h, height)
        if best is not None:
            self._set_tip(ctx, int(tip["height"]), *best)
            ctx.emit("btc_light_client_tip", height=str(best[2]), hash=best[1], work=str(best[0]))
        new_tip = st.get("tip")
        return {"tip_height": new_tip["height"], "tip_hash": new_tip["hash"], "inserted": inserted}

    def _set_tip(self, ctx: Context, old_height: int, work: int, tip_hash: str, tip_height: int) -> None:
        """Make ``tip_hash`` the main-chain tip: rewrite the main index back to the fork point."""
        st = self.store(ctx)
        for height in range(tip_height + 1, old_height + 1):  # the new chain may be shorter
            st.delete(_main_key(height))
        h, height = tip_hash, tip_height
        reorg = 0
        while h is not None and st.get(_main_key(height)) != h:
            if st.get(_main_key(height)) is not None:
                reorg += 1
            st.set(_main_key(height), h)
            h = st.get("h/" + h)["parent"]
            height -= 1
        if reorg or tip_height < old_height:
            floor = height + 1  # lowest height whose main-chain header changed
            prev = st.get("reorg_floor")
            st.set("reorg_floor", floor if prev is None else min(int(prev), floor))
        if reorg:
            ctx.emit("btc_light_client_reorg", depth=str(reorg), new_tip=tip_hash)
        st.set("tip", {"height": tip_height, "hash": tip_hash, "work": str(work)})

    def exec_insert_headers(self, ctx: Context, sender: str, body: dict[str, Any], funds: list[Coin]) -> dict[str, Any]:
        """``{"insert_headers": {"headers": [hex80, ...]}}`` → ``{tip_height, tip_hash, inserted}``."""
        self.check_reporter(ctx, sender)
        raw = body.get("headers")
        if not isinstance(raw, list) or not raw:
            raise InvalidRequestError("insert_headers: headers must be a non-empty list of hex headers")
        if len(raw) > MAX_HEADERS_PER_MSG:
            raise InvalidRequestError(f"insert_headers: at most {MAX_HEADERS_PER_MSG} headers per message")
        headers = [_parse_header(x, i) for i, x in enumerate(raw)]
        ctx.gas.consume(500 * len(headers), "insert_headers")
        return self.insert(ctx, headers)

    # ------------------------------------------------------------------ queries
    def query_tip(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{height, hash, work}``; all null (work "0") before a base is set."""
        t = self.tip(ctx)
        if t is None:
            return {"height": None, "hash": None, "work": "0"}
        return {"height": t["height"], "hash": t["hash"], "work": t["work"]}

    def query_params(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{insert_headers_allow_list: [bech32, ...]}`` (empty: permissionless)."""
        return self.params(ctx)

    def query_base(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{height, hash}`` of the trusted base header (nulls if none)."""
        return self.store(ctx).get("base") or {"height": None, "hash": None}

    def query_header(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{height}`` → ``{height, hash, header}`` on the main chain, or ``{hash: null}``."""
        height = _height_arg(body.get("height"))
        h = self.main_chain_hash(ctx, height)
        if h is None:
            return {"height": height, "hash": None, "header": None}
        return {"height": height, "hash": h, "header": self.header_record(ctx, h)["header"]}  # type: ignore[index]

    def query_header_by_hash(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{hash}`` → ``{height, hash, header, main_chain}`` or ``{hash: null}``."""
        h = _hash_arg(body.get("hash"))
        rec = self.header_record(ctx, h)
        if rec is None:
            return {"height": None, "hash": None, "header": None, "main_chain": False}
        return {"height": rec["height"], "hash": h, "header": rec["header"],
                "main_chain": self.is_main_chain(ctx, h, rec["height"])}

    def query_depth(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{hash}`` → ``{depth}`` (tip 0, -1 off the main chain); error ``unknown header``."""
        h = _hash_arg(body.get("hash"))
        d = self.depth(ctx, h)
        if d is None:
            raise LightClientError(f"unknown header {h}")
        return {"depth": d}
