"""Infrastructure: the MySQL pool, Redis clients, the local disk queue, background threads."""
