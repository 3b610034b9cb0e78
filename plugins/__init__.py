"""The plugin contract of reqo and its built-in algorithm plugins."""
