"""An Upstash-REST-compatible gateway in front of a real redis-server (or Redis Cluster).

Run it with `python -m emulators.redis_rest --port P --redis-url URL --token T`; the wire rules it
follows are in shared/reference/upstash-redis-rest.md.
"""
