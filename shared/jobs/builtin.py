"""The jobs every deployment has (loaded before `STASHKIT_JOB_MODULES`)."""
