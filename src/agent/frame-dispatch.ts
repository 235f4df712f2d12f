import { CloseCode } from "../protocol/close-codes.js";
import { FrameType, parseClientFrame, type RpcRequestFrame } from "../protocol/frames.js";
import { findCallable } from "./callable.js";
import type { ServerConnection } from "./connection.js";
import type { AgentInstance } from "./instance.js";
import { isThenable, publicMessage } from "./shared.js";
import { StreamingResponse } from "./streaming-response.js";

/**
 * A frame arrived; it is handled after every earlier frame of the same connection: an RPC
 * call (plain or streaming), a state write, an in-band token refresh or a user message,
 * each authorized by the connection's own auth first. Plain functions of the instance and
 * the connection, so a frame allocates nothing to reach them.
 */
export function receiveFrame(
  instance: AgentInstance,
  connection: ServerConnection,
  data: Buffer,
  isBinary: boolean,
): void {
  connection.enqueue(() =>
    connection
      .frameScope(instance.agent)
      .run(() => handleFrame(instance, connection, data, isBinary)),
  );
}

function handleFrame(
  instance: AgentInstance,
  connection: ServerConnection,
  data: Buffer,
  isBinary: boolean,
): unknown {
  if (!connection.isOpen) return undefined;
  if (isBinary) return userMessage(instance, connection, data);
  const text = data.toString("utf8");
  const parsed = parseClientFrame(text);
  switch (parsed.kind) {
    case "rpc":
      return rpc(instance, connection, parsed.frame);
    case "state":
      return clientState(instance, connection, parsed.frame.state);
    case "auth":
      return connection.refreshAuth(parsed.frame.token);
    case "invalid":
      if (parsed.id !== undefined) {
        connection.sendFrame({
          type: FrameType.Rpc,
          id: parsed.id,
          success: false,
          error: parsed.error,
        });
      } else {
        connection.close(CloseCode.PolicyViolation, parsed.error);
      }
      return undefined;
    default:
      return userMessage(instance, connection, text);
  }
}

async function userMessage(
  instance: AgentInstance,
  connection: ServerConnection,
  message: string | Buffer,
): Promise<void> {
  const refusal = connection.authorize("message");
  if (refusal !== undefined) {
    connection.sendFrame({ type: FrameType.Refused, action: "message", error: refusal });
    return;
  }
  try {
    await instance.agent.onMessage(connection, message);
  } catch (error) {
    instance.reportError(connection, error);
  }
}

/**
 * Answer one call. Not `async`: a synchronous callable is answered without allocating a
 * promise; only a callable that returns one makes the connection wait for it.
 */
function rpc(
  instance: AgentInstance,
  connection: ServerConnection,
  frame: RpcRequestFrame,
): Promise<void> | undefined {
  const { id, method, args } = frame;
  const refusal = connection.authorize("rpc");
  if (refusal !== undefined) {
    connection.sendFrame({ type: FrameType.Rpc, id, success: false, error: refusal });
    return;
  }
  const agent = instance.agent;
  const found = findCallable(agent, method);
  if (found === undefined) {
    connection.sendFrame({
      type: FrameType.Rpc,
      id,
      success: false,
      error: `Method ${method} is not callable`,
    });
    return;
  }
  if (found.metadata.streaming) {
    // A stream may run for a long time: it starts in frame order, then runs alongside
    // later frames instead of holding them. It counts as activity, so shutdown waits for
    // it and the instance is not evicted (its database closed) under it.
    const stream = new StreamingResponse(connection, id);
    void instance.track(async () => {
      try {
        const result = await found.method.apply(agent, [stream, ...args]);
        if (!stream.isClosed) stream.end(result);
      } catch (error) {
        instance.reportError(connection, error);
        if (!stream.isClosed) stream.error(publicMessage(error));
      }
    });
    return;
  }
  let result: unknown;
  try {
    result = found.method.apply(agent, args);
  } catch (error) {
    rpcFailed(instance, connection, id, error);
    return;
  }
  if (isThenable(result)) {
    return Promise.resolve(result).then(
      (value) => rpcAnswer(connection, id, method, value),
      (error) => rpcFailed(instance, connection, id, error),
    );
  }
  rpcAnswer(connection, id, method, result);
}

function rpcFailed(
  instance: AgentInstance,
  connection: ServerConnection,
  id: string,
  error: unknown,
): void {
  instance.reportError(connection, error);
  connection.sendFrame({ type: FrameType.Rpc, id, success: false, error: publicMessage(error) });
}

function rpcAnswer(
  connection: ServerConnection,
  id: string,
  method: string,
  result: unknown,
): void {
  let text: string;
  try {
    text = JSON.stringify({ type: FrameType.Rpc, id, success: true, result, done: true });
  } catch {
    text = JSON.stringify({
      type: FrameType.Rpc,
      id,
      success: false,
      error: `Result of ${method} is not serializable`,
    });
  }
  connection.send(text);
}

async function clientState(
  instance: AgentInstance,
  connection: ServerConnection,
  state: unknown,
): Promise<void> {
  if (connection.readonly) {
    connection.sendFrame({ type: FrameType.StateError, error: "Connection is readonly" });
    return;
  }
  const refusal = connection.authorize("state:write");
  if (refusal !== undefined) {
    connection.sendFrame({ type: FrameType.StateError, error: refusal });
    return;
  }
  try {
    instance.agent.validateStateChange(state, connection);
  } catch (error) {
    connection.sendFrame({
      type: FrameType.StateError,
      error: `State update rejected: ${publicMessage(error)}`,
    });
    return;
  }
  try {
    instance.commitState(state, connection);
  } catch (error) {
    instance.reportError(connection, error);
    connection.sendFrame({ type: FrameType.StateError, error: "State could not be saved" });
  }
}
