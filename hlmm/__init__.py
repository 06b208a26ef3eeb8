"""hlmm: a simulation-first market maker for Hyperliquid perpetuals."""
