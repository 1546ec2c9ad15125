"""Runs: request, schedule, execute (lease, slices, continuation) and record export runs."""
