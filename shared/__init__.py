"""Segment Export for Dynamics 365 Sales: the application package."""
