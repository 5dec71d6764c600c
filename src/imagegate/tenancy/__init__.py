"""Who is calling: tenants, API keys (stored hashed), browser tokens, scopes, principals."""
