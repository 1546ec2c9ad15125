"""Outcome-change notifications (webhooks): Teams workflow, Slack, or signed generic JSON.

``decide`` (pure: when to tell), ``payloads`` (pure: what to say), ``webhook`` (address rules
and delivery with retries), ``service`` (per finished run: decide, claim, send, record).
Never on a run's critical path: shared/runs/triggers.py calls the service after the run's final
status is saved, with a bounded time, and swallows its errors.
"""
