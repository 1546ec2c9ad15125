"""Developer scripts: the demo (`make demo`) and its sample data."""
