"""Writes of the usage app, by domain: ``metering`` (the interval log, rollups),
``alerts`` (quota nearly exhausted), ``requests`` (quota requests and decisions)."""
