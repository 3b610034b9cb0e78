"""The trainer role: fits models from snapshots and publishes versioned artifacts."""
