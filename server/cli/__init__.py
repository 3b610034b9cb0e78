"""The `reqo` command line."""
