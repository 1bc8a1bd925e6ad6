"""Use cases the conversation and the web app call: linking, invoices, users."""
