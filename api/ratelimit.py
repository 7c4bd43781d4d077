# Vercel entry point: per-function memory and maxDuration apply only to files under api/ (deploy.md §3.4).
from functions.ratelimit import app

__all__ = ["app"]
