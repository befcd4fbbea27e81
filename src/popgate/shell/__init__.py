"""The management shell: Exchange Management Shell cmdlets over the host's control API."""
