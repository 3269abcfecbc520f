"""btc_staking: Babylon-compatible Bitcoin staking primitives (scripts, txs, EOTS, adaptor sigs, proofs)."""
