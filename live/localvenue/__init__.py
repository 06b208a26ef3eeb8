"""The local Hyperliquid-compatible venue: the simulated engine behind /info, /exchange and /ws on loopback."""
