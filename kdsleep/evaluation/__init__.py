"""kdsleep.evaluation."""
