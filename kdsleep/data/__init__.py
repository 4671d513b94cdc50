"""kdsleep.data."""
