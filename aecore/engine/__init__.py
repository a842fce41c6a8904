"""The engine: data, models, the training loop and what reads or writes a model. Imports nothing above it."""
