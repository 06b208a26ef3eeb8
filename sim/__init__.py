"""The simulated venue: order book, order flow, regimes, latency, and the gymnasium environment."""
