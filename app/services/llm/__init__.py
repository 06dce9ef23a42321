"""The chat model layer.

``base``: the request, stream events and errors every model shares; ``claude``: Claude
through the Anthropic SDK; ``offline``: answers quoted from passages when no API key is
set; ``factory``: ``get_chat_model(settings)`` picks one.
"""
