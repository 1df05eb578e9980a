"""Writes for compute resources. Import from the submodules."""
