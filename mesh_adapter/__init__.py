"""Mesh Security provider/consumer contract models and the BTC delegation adapter (pure Python)."""
