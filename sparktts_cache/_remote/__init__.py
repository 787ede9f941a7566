"""Remote backends, shared between machines: Redis, and a local tier in front of a shared one."""
