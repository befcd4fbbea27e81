"""Tests of popgate.directory (a package so its module names cannot clash with other suites)."""
