"""The market maker. Depends only on hlmm.venue / hlmm.instrument, never on sim or live."""
