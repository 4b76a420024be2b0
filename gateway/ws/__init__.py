"""The trading WebSocket transport (`/ws/trade`) and the WebSocket frame helpers."""
