import { EventEmitter } from "node:events";
import postgres, { type Sql } from "postgres";
import type { Membership } from "./membership.js";
import type { ResolvedClusterOptions } from "./options.js";
import type { Ownership } from "./ownership.js";
import { TimeoutError, withTimeout } from "./timeout.js";
import { WAKEUP_CHANNEL, type WakeupNotice } from "./wakeups.js";

/**
 * Start the instance `agent`/`name` on this node, which then runs whatever is due. Called
 * after this node claimed it; a rejection gives the claim back so another scan (here or
 * on another node) tries again.
 */
export type WakeInstance = (agent: string, name: string) => Promise<void>;

/** Options of `Waker`; each default is in its doc. */
export type WakerOptions = Pick<ResolvedClusterOptions, "postgres" | "schema"> & {
  /**
   * Longest time between two scans, whatever the notifications and timers say: how late a
   * missed notification can make a wakeup. Default 5 000 ms.
   */
  scanMs?: number;
  /**
   * How long a taken row is left alone before any node may take it again, should the
   * node that took it die before its wake wrote the row anew. Default 10 000 ms.
   */
  retakeMs?: number;
  /** Rows taken by one scan at most; a full batch is followed by another scan at once. Default 32. */
  batch?: number;
};

const DEFAULTS = { scanMs: 5_000, retakeMs: 10_000, batch: 32 } as const;
/** Notifications within this many ms share one look at the table. */
const NOTICE_DEBOUNCE_MS = 20;
/** Waking this long after a lease's end by Postgres's clock leaves room for its rounding. */
const LEASE_SLACK_MS = 50;

/** Events of a `Waker`. */
export interface WakerEvents {
  /** This node claimed `instance` for a due row and its wake resolved. */
  woken: [{ instance: string; epoch: number }];
  /** The wake of a claimed instance rejected; the claim was given back. */
  wakeFailed: [{ instance: string; error: unknown }];
  /** A scan finished; `taken` rows were taken by it (for health checks and tests). */
  scanned: [{ taken: number }];
}

/**
 * Every node's waker for the cluster-wide wakeup index: it finds rows that are due and
 * whose instance has no live owner (its owner's lease expired, or it was released), claims
 * the instance through `Ownership.claim()` and calls `wake(agent, name)`. An instance
 * whose owner is alive is never woken here: its own timer runs it.
 *
 * Rows are taken with `FOR UPDATE SKIP LOCKED` in one statement that also moves them
 * `retakeMs` ahead, so wakers scanning at once split the due rows between them instead of
 * all claiming the same ones, and a row whose taker died is due again later. The claim
 * decides (exactly one node wins); the woken instance then writes its row anew under its
 * epoch, or removes it when nothing is due.
 *
 * It scans when Postgres announces a change (LISTEN), at the time the earliest row can
 * next be woken (its due time, or its owner's lease end when that is later), and at least
 * every `scanMs`, which catches any notification that was missed.
 */
export class Waker extends EventEmitter<WakerEvents> {
  readonly #options: Required<WakerOptions>;
  readonly #membership: Membership;
  readonly #ownership: Ownership;
  readonly #wake: WakeInstance;
  #sql: Sql;
  #listener: Sql | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When the timer fires (epoch ms); a notice of a later due time changes nothing. */
  #armedFor = 0;
  #noticeTimer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #again = false;
  #closed = false;
  /** Instances being woken here now, so a scan does not claim them twice. */
  readonly #waking = new Set<string>();
  readonly #onServing = () => this.scanSoon();

  private constructor(
    options: WakerOptions,
    membership: Membership,
    ownership: Ownership,
    wake: WakeInstance,
  ) {
    super();
    this.#options = {
      postgres: options.postgres,
      schema: options.schema,
      scanMs: options.scanMs ?? DEFAULTS.scanMs,
      retakeMs: options.retakeMs ?? DEFAULTS.retakeMs,
      batch: options.batch ?? DEFAULTS.batch,
    };
    this.#membership = membership;
    this.#ownership = ownership;
    this.#wake = wake;
    this.#sql = connect(options.postgres);
  }

  /** Start listening and scanning; resolves after the first scan. */
  static async start(
    options: WakerOptions,
    membership: Membership,
    ownership: Ownership,
    wake: WakeInstance,
  ): Promise<Waker> {
    const waker = new Waker(options, membership, ownership, wake);
    try {
      await waker.#listen();
    } catch (error) {
      await waker.close();
      throw error;
    }
    membership.on("serving", waker.#onServing);
    await waker.scan();
    return waker;
  }

  /**
   * Tell every node's waker that `instance` was released (evicted) with its row left in
   * place: a due time that its live owner covered must now be watched by someone. Call it
   * after `Ownership.release()`.
   */
  async released(instance: string): Promise<void> {
    const notice: WakeupNotice = { schema: this.#options.schema, instance };
    await this.#sql`SELECT pg_notify(${WAKEUP_CHANNEL}, ${JSON.stringify(notice)})`;
  }

  /** Scan at once (coalesced with a scan in progress, which then runs once more). */
  scanSoon(): void {
    void this.scan().catch(() => {});
  }

  /** Take and wake what is due now, then arm the timer for the next time anything can be. */
  scan(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#scanning !== undefined) {
      this.#again = true;
      return this.#scanning;
    }
    const run = async () => {
      try {
        do {
          this.#again = false;
          await this.#scanOnce();
        } while (this.#again && !this.#closed);
      } finally {
        this.#scanning = undefined;
      }
    };
    this.#scanning = run();
    return this.#scanning;
  }

  /** Stop listening and scanning. Wakes already called are not waited for. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#noticeTimer);
    this.#membership.off("serving", this.#onServing);
    await Promise.all([this.#listener?.end({ timeout: 0 }), this.#sql.end({ timeout: 1 })]);
  }

  async #scanOnce(): Promise<void> {
    let wait = this.#options.scanMs;
    let taken = 0;
    try {
      if (this.#membership.serving) {
        // A scan that hangs (a silent partition) would stop every later one.
        const limit = Math.max(2_000, this.#options.scanMs);
        const instances = await withTimeout(this.#take(), limit, "wakeup scan");
        taken = instances.length;
        for (const instance of instances) void this.#claimAndWake(instance);
        if (taken === this.#options.batch) wait = 0;
        else wait = Math.min(wait, await withTimeout(this.#nextWait(), limit, "wakeup scan"));
      }
    } catch (error) {
      if (error instanceof TimeoutError && !this.#closed) this.#recycle();
      // Otherwise Postgres is unreachable: the next scan tries again.
    }
    if (this.#closed) return;
    this.emit("scanned", { taken });
    this.#arm(wait);
  }

  /** Take the due rows of instances without a live owner, and move them `retakeMs` ahead. */
  async #take(): Promise<string[]> {
    const sql = this.#sql;
    const s = this.#options.schema;
    const rows = await sql<{ instance: string }[]>`
      WITH due AS (
        SELECT w.instance FROM ${sql(s)}.wakeups w
        WHERE w.next_due_at <= (extract(epoch FROM now()) * 1000)::bigint
          AND NOT EXISTS (
            SELECT 1 FROM ${sql(s)}.owners o
            JOIN ${sql(s)}.nodes n ON n.id = o.node_id AND n.lease_expires_at >= now()
            WHERE o.instance = w.instance)
        ORDER BY w.next_due_at
        LIMIT ${this.#options.batch}
        FOR UPDATE OF w SKIP LOCKED)
      UPDATE ${sql(s)}.wakeups w
      SET next_due_at = (extract(epoch FROM now()) * 1000)::bigint + ${this.#options.retakeMs}
      FROM due WHERE w.instance = due.instance
      RETURNING w.instance`;
    return rows.map((row) => row.instance).filter((instance) => !this.#waking.has(instance));
  }

  /**
   * Milliseconds until the earliest row can be woken, by Postgres's clock: its due time,
   * or, while its owner is alive, that owner's lease end if later.
   */
  async #nextWait(): Promise<number> {
    const sql = this.#sql;
    const s = this.#options.schema;
    const [row] = await sql<{ wait: string | null }[]>`
      SELECT min(GREATEST(
          w.next_due_at,
          COALESCE((extract(epoch FROM n.lease_expires_at) * 1000)::bigint, 0))
        ) - (extract(epoch FROM now()) * 1000)::bigint AS wait
      FROM ${sql(s)}.wakeups w
      LEFT JOIN ${sql(s)}.owners o ON o.instance = w.instance
      LEFT JOIN ${sql(s)}.nodes n ON n.id = o.node_id AND n.lease_expires_at >= now()`;
    const wait = row?.wait === null || row?.wait === undefined ? Infinity : Number(row.wait);
    return Math.max(0, wait) + LEASE_SLACK_MS;
  }

  async #claimAndWake(instance: string): Promise<void> {
    this.#waking.add(instance);
    try {
      const claim = await this.#ownership.claim(instance);
      // A live owner elsewhere won the race: its own timer runs the instance.
      if (!claim.owned) return;
      const slash = instance.indexOf("/");
      try {
        await this.#wake(instance.slice(0, slash), instance.slice(slash + 1));
        this.emit("woken", { instance, epoch: claim.epoch });
      } catch (error) {
        // Give it back so that the next scan, here or elsewhere, tries again.
        await this.#ownership.release(instance).catch(() => {});
        this.emit("wakeFailed", { instance, error });
      }
    } catch {
      // Not serving, or Postgres unreachable: the row is due again after `retakeMs`.
    } finally {
      this.#waking.delete(instance);
    }
  }

  #arm(wait: number): void {
    clearTimeout(this.#timer);
    const delay = Math.min(Math.max(0, wait), this.#options.scanMs);
    this.#armedFor = Date.now() + delay;
    this.#timer = setTimeout(() => this.scanSoon(), delay).unref();
  }

  async #listen(): Promise<void> {
    // A client of its own: LISTEN holds its connection for as long as it lives.
    const listener = postgres(this.#options.postgres, {
      max: 1,
      connect_timeout: 5,
      onnotice: () => {},
    });
    this.#listener = listener;
    await listener.listen(
      WAKEUP_CHANNEL,
      (payload) => this.#onNotify(payload),
      // After every (re)LISTEN: what changed while not listening is in the table.
      () => this.scanSoon(),
    );
  }

  #onNotify(payload: string): void {
    let notice: Partial<WakeupNotice>;
    try {
      notice = JSON.parse(payload) as Partial<WakeupNotice>;
    } catch {
      return;
    }
    if (notice.schema !== this.#options.schema || this.#closed) return;
    // The timer already looks at the table before that row can be due.
    if (typeof notice.due === "number" && notice.due >= this.#armedFor) return;
    // A burst of changes costs one scan.
    this.#noticeTimer ??= setTimeout(() => {
      this.#noticeTimer = undefined;
      this.scanSoon();
    }, NOTICE_DEBOUNCE_MS).unref();
  }

  #recycle(): void {
    const old = this.#sql;
    this.#sql = connect(this.#options.postgres);
    old.end({ timeout: 0 }).catch(() => {});
  }
}

function connect(url: string): Sql {
  return postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} });
}
