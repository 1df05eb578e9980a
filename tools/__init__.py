"""Developer tooling for Isotope (local infrastructure, builds). Not imported by the portal."""
