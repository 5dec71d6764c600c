"""Never generate the same image twice.

- :mod:`.keys`: which requests are deterministic (an explicit seed), and the key of what
  decides their pixels; the request's cache directive (``Cache-Control`` or ``cache``).
- :mod:`.entries`: the result cache (a key -> the job whose images answer it) and
  single-flight (an identical job in flight, which a new one follows instead of running).
- :mod:`.idempotency`: ``Idempotency-Key``, a tenant's key -> the job its first request made.

The store runs them inside the transaction that records or ends a job, so a hit, a
follower's result and an idempotent replay are as durable as the job itself.
"""
