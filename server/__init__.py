"""The reqo host: configuration, the Recombee-compatible HTTP API and the command line."""
