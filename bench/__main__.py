"""``python -m bench``: popgate beside Dovecot, issue 9's workloads in one run (bench/suite.py)."""

from bench.suite import main

main()
