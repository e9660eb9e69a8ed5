"""`cove serve`: the HTTP API (Ollama-compatible `/api`, OpenAI-compatible `/v1`)."""
