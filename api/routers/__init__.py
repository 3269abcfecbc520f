"""HTTP routers: ``v2`` (staking queries) and ``health``."""
