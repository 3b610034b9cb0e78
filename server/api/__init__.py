"""Recombee's API as a table of operations, shared by direct HTTP requests and batches."""
