/**
 * Where the auth layer keeps what must outlive the process: revocations and spent
 * single-use ticket ids. The policy keeps its fast synchronous in-memory checks; it loads
 * them from a store at startup (and on a periodic reload) and writes every change through.
 * Outpost opens a SQLite store in the data directory (`src/storage/auth-state.ts`); cluster
 * mode shares one in PostgreSQL.
 */

/** One revocation, by subject or by token id. */
export interface RevocationEntry {
  kind: "sub" | "jti";
  value: string;
  /** ms since epoch */
  revokedAt: number;
  /** ms; after this it can be pruned */
  expiresAt: number;
}

/** A durable home for revocations and spent ticket ids. */
export interface AuthStateStore {
  /** Everything not yet expired, at startup and on periodic reload. */
  load(): Promise<{
    revocations: RevocationEntry[];
    spentTickets: { jti: string; expiresAt: number }[];
  }>;
  addRevocation(entry: RevocationEntry): Promise<void>;
  /** Atomically spend a ticket id: false when it was already spent. */
  spendTicket(jti: string, expiresAt: number): Promise<boolean>;
  prune(now: number): Promise<void>;
  /** Changes made elsewhere (another node), pushed as they happen. Optional. */
  subscribe?(listener: (entry: RevocationEntry) => void): () => void;
  close(): Promise<void>;
}
