"""Concurrency tests: many sessions, deliveries and maildrop locks against real services."""
