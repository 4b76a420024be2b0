"""The gateway-matcher link: frames, messages, the client end and operator actions."""
