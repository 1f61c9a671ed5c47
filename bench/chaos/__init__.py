"""bench.chaos: a training run under a scripted fault schedule (see __main__.py)."""
