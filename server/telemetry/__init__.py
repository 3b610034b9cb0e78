"""What reqo tells its operator: Prometheus metrics, structured logs with request ids."""
