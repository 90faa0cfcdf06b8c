"""Inference from stores: moment-network CNNs, optuna searches, normalising flows and emulators."""
