"""The control plane: the Celery app, round dispatch as chords, the chord callback, the dispatch tick."""
