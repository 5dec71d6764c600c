// The caller's credential: a secret API key (servers only), a fixed browser token, or a
// getToken() callback whose token is fetched again shortly before it expires (or after a 401).

export type TokenResult =
  | string
  | { token: string; expires_at?: string | null; expiresAt?: string | number | Date | null };

export interface AuthOptions {
  /** A secret key (ig_sk_…). Never put one in a page: mint browser tokens instead. */
  apiKey?: string;
  /** A browser token (from POST /v1/client-tokens), used as it is. */
  token?: string;
  /** Called for a token at first use, again before it expires, and after a 401. */
  getToken?: () => TokenResult | Promise<TokenResult>;
  /** How long before expiry getToken() is called again (default 30 s). */
  refreshMarginS?: number;
}

interface Held {
  token: string;
  expiresAtMs: number | null;
}

export class Auth {
  readonly #options: AuthOptions;
  readonly #now: () => number;
  #held: Held | null = null;
  #pending: Promise<Held> | null = null;

  constructor(options: AuthOptions = {}, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
  }

  /** A key is never sent in a URL (the server refuses it there); tokens may be. */
  get isSecretKey(): boolean {
    return this.#options.apiKey !== undefined;
  }

  get canRefresh(): boolean {
    return this.#options.getToken !== undefined;
  }

  async credential(): Promise<string | undefined> {
    const { apiKey, token, getToken } = this.#options;
    if (apiKey !== undefined) return apiKey;
    if (getToken === undefined) return token;
    if (this.#held === null || this.#expiring(this.#held)) this.#held = await this.#fetch(getToken);
    return this.#held.token;
  }

  /** Forget the held token: the next request asks getToken() for a new one. */
  invalidate(): void {
    this.#held = null;
  }

  #expiring(held: Held): boolean {
    const marginMs = (this.#options.refreshMarginS ?? 30) * 1000;
    return held.expiresAtMs !== null && this.#now() >= held.expiresAtMs - marginMs;
  }

  #fetch(getToken: NonNullable<AuthOptions["getToken"]>): Promise<Held> {
    // One call for many concurrent requests that find the token expiring at once.
    this.#pending ??= Promise.resolve()
      .then(getToken)
      .then(held)
      .finally(() => {
        this.#pending = null;
      });
    return this.#pending;
  }
}

function held(result: TokenResult): Held {
  if (typeof result === "string") return { token: result, expiresAtMs: jwtExpiry(result) };
  const given = result.expiresAt ?? result.expires_at ?? null;
  const expiresAtMs = given === null ? jwtExpiry(result.token) : new Date(given).getTime();
  return { token: result.token, expiresAtMs: Number.isNaN(expiresAtMs) ? null : expiresAtMs };
}

/** The `exp` claim of a JWT, in milliseconds; null for anything else. The signature is
 * the server's business: this only says when to fetch a fresh token. */
export function jwtExpiry(token: string): number | null {
  const payload = token.split(".")[1];
  if (payload === undefined) return null;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims: unknown = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")));
    const exp = (claims as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}
