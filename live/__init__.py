"""The Hyperliquid bridge and the local Hyperliquid-compatible venue."""
