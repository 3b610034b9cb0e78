"""Offline tools that read a snapshot: evaluate, optimize, plot, kpi."""
