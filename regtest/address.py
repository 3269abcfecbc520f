"""Bitcoin address encoding for the regtest tooling: BIP-173 bech32 (witness v0), BIP-350 bech32m
(v1+) and base58check P2PKH / P2SH. Shared by the RPC client (``regtest.rpc``), the bitcoind-dialect
server (``regtest.rpc_server``) and the wallet."""

from __future__ import annotations

import hashlib

__all__ = ["NETWORKS", "REGTEST_HRP", "address_to_script", "bech32_polymod", "script_to_address"]

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32M_CONST = 0x2BC830A3
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
NETWORKS = {  # hrp, p2pkh version, p2sh version
    "regtest": ("bcrt", 0x6F, 0xC4),
    "testnet": ("tb", 0x6F, 0xC4),
    "signet": ("tb", 0x6F, 0xC4),
    "mainnet": ("bc", 0x00, 0x05),
}
REGTEST_HRP = NETWORKS["regtest"][0]


def bech32_polymod(values: list[int]) -> int:
    """BIP-173 checksum polynomial."""
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def hrp_expand(hrp: str) -> list[int]:
    """BIP-173 human-readable-part expansion."""
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def convertbits(data: list[int] | bytes, frombits: int, tobits: int, pad: bool) -> list[int] | None:
    """Regroup bits (BIP-173 reference); None when ``pad`` is False and the input has bad padding."""
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (tobits - bits)) & maxv)
    elif not pad and (bits >= frombits or (acc << (tobits - bits)) & maxv):
        return None
    return out


def _base58_decode(s: str) -> bytes | None:
    n = 0
    for c in s:
        if c not in _B58:
            return None
        n = n * 58 + _B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    raw = b"\x00" * (len(s) - len(s.lstrip("1"))) + raw
    if len(raw) < 5 or hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()[:4] != raw[-4:]:
        return None
    return raw[:-4]


def _base58_encode(payload: bytes) -> str:
    full = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(full, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(full) - len(full.lstrip(b"\0"))) + out


def _segwit_address(hrp: str, version: int, program: bytes) -> str:
    data = [version] + (convertbits(program, 8, 5, True) or [])
    polymod = bech32_polymod(hrp_expand(hrp) + data + [0] * 6) ^ (1 if version == 0 else BECH32M_CONST)
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in data + checksum)


def script_to_address(script: bytes, network: str = "regtest") -> str:
    """Address of a standard scriptPubKey (P2PKH, P2SH, segwit v0–v16); ValueError otherwise."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}")
    hrp, p2pkh_ver, p2sh_ver = NETWORKS[network]
    s = bytes(script)
    if len(s) == 25 and s[:3] == b"\x76\xa9\x14" and s[23:] == b"\x88\xac":
        return _base58_encode(bytes([p2pkh_ver]) + s[3:23])
    if len(s) == 23 and s[:2] == b"\xa9\x14" and s[22] == 0x87:
        return _base58_encode(bytes([p2sh_ver]) + s[2:22])
    if 4 <= len(s) <= 42 and (s[0] == 0 or 0x51 <= s[0] <= 0x60) and s[1] == len(s) - 2:
        version = 0 if s[0] == 0 else s[0] - 0x50
        if version == 0 and len(s) - 2 not in (20, 32):
            raise ValueError("witness v0 program must be 20 or 32 bytes")
        return _segwit_address(hrp, version, s[2:])
    raise ValueError(f"script has no address form: {s.hex()}")


def address_to_script(address: str, network: str = "regtest") -> bytes:
    """scriptPubKey for an address: bech32 (v0) / bech32m (v1+) segwit, or base58 P2PKH/P2SH.
    Raises ValueError for anything else (bad checksum, wrong network, wrong encoding for the version)."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}")
    hrp, p2pkh_ver, p2sh_ver = NETWORKS[network]
    if not isinstance(address, str) or not address:
        raise ValueError("address must be a non-empty string")
    if address.lower().startswith(hrp + "1"):
        if address.lower() != address and address.upper() != address:
            raise ValueError("mixed-case bech32 address")
        a = address.lower()
        pos = a.rfind("1")
        if len(a) > 90 or any(c not in BECH32_CHARSET for c in a[pos + 1 :]) or len(a) - pos < 8:
            raise ValueError("invalid bech32 characters or length")
        data = [BECH32_CHARSET.index(c) for c in a[pos + 1 :]]
        const = bech32_polymod(hrp_expand(a[:pos]) + data)
        if not data or data[0] > 16:
            raise ValueError("invalid witness version")
        version = data[0]
        if const != (1 if version == 0 else BECH32M_CONST):
            raise ValueError("invalid bech32/bech32m checksum for this witness version")
        program = convertbits(data[1:-6], 5, 8, False)
        if program is None or not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
            raise ValueError("invalid witness program")
        return bytes([0x50 + version if version else 0, len(program)]) + bytes(program)
    raw = _base58_decode(address)
    if raw is None or len(raw) != 21:
        raise ValueError(f"not a valid {network} address")
    if raw[0] == p2pkh_ver:
        return b"\x76\xa9\x14" + raw[1:] + b"\x88\xac"
    if raw[0] == p2sh_ver:
        return b"\xa9\x14" + raw[1:] + b"\x87"
    raise ValueError(f"address is not for {network}")
