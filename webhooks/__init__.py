"""The FastAPI app: chat webhooks, payment callbacks, sandbox pages, web chat, agent console."""
