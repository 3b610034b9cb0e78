"""Offline evaluation: splits of a training snapshot, ranking metrics, and the harness behind
`reqo evaluate`."""
