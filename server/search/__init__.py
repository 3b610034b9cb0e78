"""Search Items: full-text retrieval over the catalog, synonyms, and its ranking."""
