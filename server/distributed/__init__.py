"""reqo's roles on a Ray cluster (`reqo serve --ray`): Ray Serve replicas, writer actors,
training tasks. Imported only where Ray is installed (`pip install reqo[ray]`)."""
