"""Deployment core (no Dagster): how models reach production and what is kept about it."""
