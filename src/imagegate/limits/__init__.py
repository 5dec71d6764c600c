"""Rate limits and quotas over the ``limits`` library (memory or Redis storage), and the
caps counted in the database: concurrent jobs and queue depth."""
