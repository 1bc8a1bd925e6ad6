"""Fatoura's domain: money, invoices, billers, payments and the services built on them.

Nothing here imports a chat platform, a web framework or bot/ and webhooks/.
"""
