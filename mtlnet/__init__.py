"""mtlnet: multi-task GCN models for interference detection and KPI forecasting."""

__version__ = "0.1.0"
