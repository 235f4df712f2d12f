import { randomUUID } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  generateSecret,
  importJWK,
  importPKCS8,
  importSPKI,
  type JWK,
  type JWSHeaderParameters,
} from "jose";
import { AuthError } from "./errors.js";

/** Algorithms a generated or imported key pair can have. EdDSA means Ed25519. */
export type AsymmetricAlgorithm = "EdDSA" | "ES256" | "RS256";

/** Every algorithm a local key set can sign and verify with. */
export type SigningAlgorithm = AsymmetricAlgorithm | "HS256";

const ASYMMETRIC: readonly string[] = ["EdDSA", "ES256", "RS256"];
/** Shorter HMAC keys are below the hash size, which RFC 7518 §3.2 forbids. */
const MIN_SECRET_BYTES = 32;
/** Only the public members of each key type; anything else never leaves the set. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  OKP: ["kty", "crv", "x"],
  EC: ["kty", "crv", "x", "y"],
  RSA: ["kty", "n", "e"],
};

/** A public or private JSON Web Key Set, as served at `/.well-known/jwks.json` or saved to disk. */
export interface JsonWebKeySet {
  keys: JWK[];
}

/** The key that verifies one token, with the one algorithm it allows. */
export interface ResolvedKey {
  kid: string | undefined;
  algorithm: string;
  key: CryptoKey;
}

/**
 * Anything that can find the key for a token: a local `KeySet` or a `remoteKeySet()`.
 * The key is chosen by the token's `kid`; the token's `alg` must equal that key's one
 * algorithm, so a token can never pick its own algorithm or key.
 */
export interface VerificationKeys {
  /** Algorithms some key of this set verifies. */
  readonly algorithms: readonly string[];
  /**
   * The key for a token's protected header. Throws (or rejects with) `AuthError`
   * (`unknown_key`, `algorithm_not_allowed`). A set that holds its keys answers at once, a
   * remote one with a promise: the verifier waits only when it must.
   */
  resolveKey(header: JWSHeaderParameters): ResolvedKey | Promise<ResolvedKey>;
}

/** The key `issueToken` signs with. */
export interface SigningKey {
  kid: string;
  algorithm: SigningAlgorithm;
  key: CryptoKey;
}

/** What `rotate()` adds. Without options it adds a key like the current signing key. */
export interface RotateOptions {
  /** Algorithm of the new key pair (default: that of the current signing key, else EdDSA). */
  algorithm?: SigningAlgorithm;
  /** New shared secret, for HS256 sets shared between processes (default: 32 random bytes). */
  secret?: string | Uint8Array;
  kid?: string;
}

/**
 * Signing and verification keys, each with a `kid` and exactly one algorithm. The newest
 * key with private material signs; every key verifies until it is retired.
 *
 * @example
 * const keys = await createKeySet();            // one Ed25519 pair
 * const next = await keys.rotate();             // new tokens are signed with `next`
 * // ...once every token signed by the old key has expired:
 * keys.retire(oldKid);
 */
export interface KeySet extends VerificationKeys {
  /** Every key id, oldest first. */
  readonly kids: readonly string[];
  /** The key id new tokens are signed with, or undefined for a verify-only set. */
  readonly signingKid: string | undefined;
  /** The current signing key. Throws `TypeError` for a verify-only set. */
  signingKey(): SigningKey;
  /** Add a new signing key and return its `kid`; older keys keep verifying. */
  rotate(options?: RotateOptions): Promise<string>;
  /** Stop accepting tokens signed by `kid`. Returns false if there was no such key. */
  retire(kid: string): boolean;
  /** Public keys only, to publish; shared secrets and private members are never included. */
  jwks(): JsonWebKeySet;
  /** Every key including private members and secrets, oldest first, for `saveKeySet()`. */
  export(): JsonWebKeySet;
}

/** How to make a key set; see `createKeySet`. */
export type KeySetOptions =
  | { secret: string | Uint8Array; kid?: string }
  | { algorithm?: AsymmetricAlgorithm; kid?: string }
  | { jwks: JsonWebKeySet }
  | { pem: string; algorithm: AsymmetricAlgorithm; kid?: string };

interface Entry {
  kid: string;
  algorithm: SigningAlgorithm;
  verifyKey: CryptoKey;
  signKey?: CryptoKey;
  /** Public members only (absent for a shared secret). */
  publicJwk?: JWK;
  /** Everything needed to rebuild the key (absent for a public-only key). */
  privateJwk?: JWK;
}

/**
 * Make a key set.
 *
 * - `{ secret }`: one HS256 key from a shared secret of at least 32 bytes (like the
 *   `JWT_SECRET` of a hand-written setup). The secret is imported once as a `CryptoKey`.
 * - `{ algorithm }` or nothing: generate a key pair (EdDSA/Ed25519 by default, ES256, RS256).
 * - `{ jwks }`: import keys (private JWKs sign and verify, public ones only verify); the
 *   last private key signs. This is what `export()` and `saveKeySet()` write.
 * - `{ pem, algorithm }`: import a PKCS#8 private key or an SPKI public key.
 *
 * A key without a `kid` gets the first 64 bits of its RFC 7638 thumbprint, in hex, as `kid`.
 *
 * @example
 * const keys = await createKeySet({ secret: process.env.JWT_SECRET! });
 * const token = await issueToken(keys, { sub: "user-1", agent: "chat", name: "room-1" });
 */
export async function createKeySet(options: KeySetOptions = {}): Promise<KeySet> {
  const entries: Entry[] = [];
  if ("secret" in options) {
    entries.push(await secretEntry(options.secret, options.kid));
  } else if ("jwks" in options) {
    const keys = options.jwks?.keys;
    if (!Array.isArray(keys) || keys.length === 0) {
      throw new TypeError("createKeySet: `jwks.keys` must be a non-empty array of JWKs");
    }
    for (const jwk of keys) entries.push(await jwkEntry(jwk));
  } else if ("pem" in options) {
    entries.push(await pemEntry(options.pem, options.algorithm, options.kid));
  } else {
    entries.push(await generatedEntry(options.algorithm ?? "EdDSA", options.kid));
  }
  return new LocalKeySet(entries);
}

class LocalKeySet implements KeySet {
  #entries: Entry[] = [];
  #byKid = new Map<string, Entry>();
  #algorithms: string[] = [];

  constructor(entries: Entry[]) {
    for (const entry of entries) this.#add(entry);
  }

  get algorithms(): readonly string[] {
    return this.#algorithms;
  }

  get kids(): readonly string[] {
    return this.#entries.map((entry) => entry.kid);
  }

  get signingKid(): string | undefined {
    return this.#signer()?.kid;
  }

  signingKey(): SigningKey {
    const entry = this.#signer();
    if (entry?.signKey === undefined) {
      throw new TypeError("this key set has no private key, so it cannot sign tokens");
    }
    return { kid: entry.kid, algorithm: entry.algorithm, key: entry.signKey };
  }

  resolveKey(header: JWSHeaderParameters): ResolvedKey {
    const { alg, kid } = header;
    if (typeof alg !== "string" || !this.#algorithms.includes(alg)) {
      throw new AuthError("algorithm_not_allowed");
    }
    let entry: Entry | undefined;
    if (kid === undefined) {
      // Without a kid only an unambiguous set can answer; the token still cannot pick the alg.
      if (this.#entries.length === 1) entry = this.#entries[0];
    } else if (typeof kid === "string") {
      entry = this.#byKid.get(kid);
    } else {
      throw new AuthError("token_malformed");
    }
    if (entry === undefined) throw new AuthError("unknown_key");
    if (entry.algorithm !== alg) throw new AuthError("algorithm_not_allowed");
    return { kid: entry.kid, algorithm: entry.algorithm, key: entry.verifyKey };
  }

  async rotate(options: RotateOptions = {}): Promise<string> {
    const current = this.#signer()?.algorithm;
    const algorithm = options.algorithm ?? (options.secret !== undefined ? "HS256" : current);
    const entry =
      algorithm === "HS256"
        ? await secretEntry(options.secret ?? (await randomSecret()), options.kid)
        : await generatedEntry(algorithm ?? "EdDSA", options.kid);
    this.#add(entry);
    return entry.kid;
  }

  retire(kid: string): boolean {
    const entry = this.#byKid.get(kid);
    if (entry === undefined) return false;
    if (entry === this.#signer() && this.#entries.filter((e) => e.signKey).length > 1) {
      // The previous key would silently start signing again; that is never what rotation means.
      throw new TypeError(`key ${kid} is the current signing key; rotate before retiring it`);
    }
    this.#entries = this.#entries.filter((e) => e !== entry);
    this.#byKid.delete(kid);
    this.#algorithms = [...new Set(this.#entries.map((e) => e.algorithm))];
    return true;
  }

  jwks(): JsonWebKeySet {
    return {
      keys: this.#entries.flatMap((entry) => (entry.publicJwk ? [{ ...entry.publicJwk }] : [])),
    };
  }

  export(): JsonWebKeySet {
    return {
      keys: this.#entries.map((entry) => ({ ...(entry.privateJwk ?? entry.publicJwk) })),
    };
  }

  #add(entry: Entry): void {
    if (this.#byKid.has(entry.kid)) throw new TypeError(`duplicate key id "${entry.kid}"`);
    this.#entries.push(entry);
    this.#byKid.set(entry.kid, entry);
    if (!this.#algorithms.includes(entry.algorithm)) this.#algorithms.push(entry.algorithm);
  }

  #signer(): Entry | undefined {
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const entry = this.#entries[i];
      if (entry?.signKey !== undefined) return entry;
    }
    return undefined;
  }
}

/** Import an HMAC secret once as a non-extractable `CryptoKey`; jose verifies it faster than raw bytes. */
export async function importSecret(secret: string | Uint8Array): Promise<CryptoKey> {
  // Not `instanceof Uint8Array`: bytes from another realm (jsdom, vm) must work too.
  const bytes =
    typeof secret === "string"
      ? Buffer.from(secret, "utf8")
      : ArrayBuffer.isView(secret)
        ? Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength)
        : undefined;
  if (bytes === undefined || bytes.byteLength < MIN_SECRET_BYTES) {
    throw new TypeError(
      `a shared secret must be at least ${MIN_SECRET_BYTES} bytes (RFC 7518 §3.2); ` +
        "generate one with `openssl rand -base64 48`",
    );
  }
  return crypto.subtle.importKey(
    "raw",
    Uint8Array.from(bytes),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

async function secretEntry(secret: string | Uint8Array, kid?: string): Promise<Entry> {
  const key = await importSecret(secret);
  const bytes = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  const k = Buffer.from(bytes).toString("base64url");
  const id = kid ?? (await thumbprint({ kty: "oct", k }));
  return {
    kid: id,
    algorithm: "HS256",
    verifyKey: key,
    signKey: key,
    privateJwk: { kty: "oct", k, kid: id, alg: "HS256", use: "sig" },
  };
}

async function randomSecret(): Promise<Uint8Array> {
  const key = await generateSecret("HS256", { extractable: true });
  const jwk = await exportJWK(key);
  return Buffer.from(jwk.k ?? "", "base64url");
}

async function generatedEntry(algorithm: string, kid?: string): Promise<Entry> {
  assertAsymmetric(algorithm);
  const pair = await generateKeyPair(algorithm, { extractable: true });
  return pairEntry(await exportJWK(pair.privateKey), algorithm, kid);
}

async function pemEntry(pem: string, algorithm: string, kid?: string): Promise<Entry> {
  assertAsymmetric(algorithm);
  const text = typeof pem === "string" ? pem.trim() : "";
  if (text.startsWith("-----BEGIN PRIVATE KEY-----")) {
    const key = await importPKCS8(text, algorithm, { extractable: true });
    return pairEntry(await exportJWK(key), algorithm, kid);
  }
  if (text.startsWith("-----BEGIN PUBLIC KEY-----")) {
    const key = await importSPKI(text, algorithm, { extractable: true });
    return publicEntry(await exportJWK(key), algorithm, kid);
  }
  throw new TypeError("createKeySet: `pem` must be a PKCS#8 private key or an SPKI public key");
}

async function jwkEntry(jwk: JWK): Promise<Entry> {
  if (jwk === null || typeof jwk !== "object")
    throw new TypeError("createKeySet: a JWK must be an object");
  if (jwk.kty === "oct") {
    if (jwk.alg !== undefined && jwk.alg !== "HS256") {
      throw new TypeError(`key ${jwk.kid ?? ""}: a shared secret only supports HS256`);
    }
    if (typeof jwk.k !== "string") throw new TypeError("createKeySet: an oct JWK needs `k`");
    return secretEntry(Buffer.from(jwk.k, "base64url"), jwk.kid);
  }
  const algorithm = jwk.alg ?? inferAlgorithm(jwk);
  assertAsymmetric(algorithm);
  return jwk.d !== undefined
    ? pairEntry(jwk, algorithm, jwk.kid)
    : publicEntry(jwk, algorithm, jwk.kid);
}

async function pairEntry(
  privateJwk: JWK,
  algorithm: AsymmetricAlgorithm,
  kid?: string,
): Promise<Entry> {
  const publicJwk = publicMembers(privateJwk);
  const id = kid ?? (await thumbprint(publicJwk));
  const withMeta = { ...privateJwk, kid: id, alg: algorithm, use: "sig" };
  try {
    return {
      kid: id,
      algorithm,
      signKey: (await importJWK(withMeta, algorithm)) as CryptoKey,
      verifyKey: (await importJWK(publicJwk, algorithm)) as CryptoKey,
      publicJwk: { ...publicJwk, kid: id, alg: algorithm, use: "sig" },
      privateJwk: withMeta,
    };
  } catch (error) {
    throw new TypeError(`key ${id}: not a valid ${algorithm} key (${(error as Error).message})`);
  }
}

async function publicEntry(jwk: JWK, algorithm: AsymmetricAlgorithm, kid?: string): Promise<Entry> {
  const publicJwk = publicMembers(jwk);
  const id = kid ?? (await thumbprint(publicJwk));
  try {
    return {
      kid: id,
      algorithm,
      verifyKey: (await importJWK(publicJwk, algorithm)) as CryptoKey,
      publicJwk: { ...publicJwk, kid: id, alg: algorithm, use: "sig" },
    };
  } catch (error) {
    throw new TypeError(`key ${id}: not a valid ${algorithm} key (${(error as Error).message})`);
  }
}

function publicMembers(jwk: JWK): JWK {
  const members = jwk.kty === undefined ? undefined : PUBLIC_MEMBERS[jwk.kty];
  if (members === undefined) throw new TypeError(`unsupported key type "${String(jwk.kty)}"`);
  const out: Record<string, unknown> = {};
  for (const member of members) {
    if ((jwk as Record<string, unknown>)[member] !== undefined) {
      out[member] = (jwk as Record<string, unknown>)[member];
    }
  }
  return out as JWK;
}

function inferAlgorithm(jwk: JWK): string {
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return "EdDSA";
  if (jwk.kty === "EC" && jwk.crv === "P-256") return "ES256";
  if (jwk.kty === "RSA") return "RS256";
  throw new TypeError(`key ${jwk.kid ?? ""}: cannot tell its algorithm; set "alg"`);
}

function assertAsymmetric(algorithm: string): asserts algorithm is AsymmetricAlgorithm {
  if (!ASYMMETRIC.includes(algorithm)) {
    throw new TypeError(
      `unsupported algorithm "${algorithm}"; use one of ${ASYMMETRIC.join(", ")} (or a secret for HS256)`,
    );
  }
}

/** Hex, not base64url: a kid that starts with "-" reads as an option on a command line. */
async function thumbprint(jwk: JWK): Promise<string> {
  const digest = await calculateJwkThumbprint(jwk, "sha256");
  return Buffer.from(digest, "base64url").subarray(0, 8).toString("hex");
}

/**
 * Read a key set written by `saveKeySet()` (or `outpost keys generate`).
 *
 * @example
 * const keys = await loadKeySet("outpost-keys.json");
 */
export async function loadKeySet(path: string): Promise<KeySet> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(
      `cannot read key file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  let jwks: JsonWebKeySet;
  try {
    jwks = JSON.parse(text) as JsonWebKeySet;
  } catch {
    throw new Error(`key file ${path} is not valid JSON`);
  }
  return createKeySet({ jwks });
}

/**
 * Write every key (private members included) to `path` as JSON, readable by the owner only
 * (mode 0600). The file is replaced atomically, so a crash never leaves half a key set.
 */
export async function saveKeySet(path: string, keySet: KeySet): Promise<void> {
  const temporary = `${path}.${randomUUID()}.tmp`;
  try {
    await writeFile(temporary, `${JSON.stringify(keySet.export(), null, 2)}\n`, {
      mode: 0o600,
      flag: "wx",
    });
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
