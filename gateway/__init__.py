"""Gateway: WebSocket, REST and FIX edges in front of the matcher."""
