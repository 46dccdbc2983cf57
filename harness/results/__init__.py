"""Run records (run.json), the history store and exporters."""
