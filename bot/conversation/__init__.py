"""The channel-neutral dialogue: Event in, list of Reply out. Imports no chat or web framework."""
from bot.conversation.events import Event, EventKind
from bot.conversation.replies import Button, ChannelLimits, DeleteMessage, Document, Image, Reply, Text

__all__ = ["Button", "ChannelLimits", "DeleteMessage", "Document", "Event", "EventKind", "Image", "Reply", "Text"]
