import { Socket } from "node:net";

type WriteFn = (this: Socket, ...args: unknown[]) => unknown;

/**
 * Record every write the server's end of a socket on `port` hands to the kernel: `write`
 * for one chunk, `writev` for a corked batch (one system call each), in order, until
 * `restore()`.
 */
export function recordServerWrites(port: number): {
  readonly writes: Array<"write" | "writev">;
  restore(): void;
} {
  const writes: Array<"write" | "writev"> = [];
  const proto = Socket.prototype as unknown as { _write: WriteFn; _writev: WriteFn };
  const original = { write: proto._write, writev: proto._writev };
  const recorded = (kind: "write" | "writev", fn: WriteFn): WriteFn =>
    function (this: Socket, ...args: unknown[]) {
      // The server's end of a socket has the server's port as its local port.
      if (this.localPort === port) writes.push(kind);
      return fn.apply(this, args);
    };
  proto._write = recorded("write", original.write);
  proto._writev = recorded("writev", original.writev);
  return {
    writes,
    restore() {
      proto._write = original.write;
      proto._writev = original.writev;
    },
  };
}
