"""btc_staking: Babylon-compatible Bitcoin staking primitives.

Modules: errors (typed errors), keys (x-only keys, BIP-340 via coincurve), tx (transactions),
sighash (BIP-341), script (leaves, TaprootTree, NUMS), params (StakingParams), staking (outputs and
tx templates), witness (witness stacks), signing (script/key-path signing, PoP), adaptor (Schnorr
adaptor signatures), eots (EOTS + CometBFT pub-rand commitments), merkle (Bitcoin inclusion
proofs), headers (block headers, PoW, chain work). Import from the submodules.
"""
