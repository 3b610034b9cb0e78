"""The HTTP serving role: the ranking pipeline, the ReQL engine, histories and live models."""
