"""The AI features: an LLM client over the OpenAI-compatible chat API, and what uses it."""
