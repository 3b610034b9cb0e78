"""ReQL, Recombee's query language: text -> AST -> typed AST -> DuckDB SQL (a pure library)."""
