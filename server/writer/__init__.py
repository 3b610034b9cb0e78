"""The writer role: the one process that writes a database's file, its change feed and its
snapshots."""
