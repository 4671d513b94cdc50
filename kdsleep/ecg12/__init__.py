"""kdsleep.ecg12."""
