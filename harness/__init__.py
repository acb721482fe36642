"""harness: reproduce synthetic-data information retrieval (InPars-v1, InPars-v2, Promptagator) on BEIR."""

__version__ = "0.1.0"
