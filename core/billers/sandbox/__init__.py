"""Sandbox billers: the seeds' portals as data plus rules, stored in their own tables."""
