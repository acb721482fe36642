"""Reliability and security tests (GitHub issue 7): kills, concurrency, network faults, corruption, bad input."""
