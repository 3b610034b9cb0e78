"""reqo's storage: one DuckDB file per database, holding the catalog and the interactions."""
