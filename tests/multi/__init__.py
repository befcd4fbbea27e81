"""popgate as an organization of several computers, each a Linux network namespace."""
