"""kdsleep.models."""
