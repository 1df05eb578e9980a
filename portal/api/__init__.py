"""Shared REST API pieces: token auth, problem+json errors, pagination, resource shape."""
