import { generateId, type UIMessage } from "ai";
import { Agent, type AgentContext, type ConnectionContext, runtimeOf } from "../agent/agent.js";
import type { Connection } from "../agent/connection.js";
import { publicMessage } from "../agent/instance.js";
import { MessageStore } from "./message-store.js";
import {
  type ChatClientEvent,
  type ChatResponseFrame,
  type ClientToolSchema,
  MessageType,
  parseChatFrame,
} from "./protocol.js";
import { buildMessage, parseStoredChunks, type ReplyResult, streamReply } from "./reply.js";
import { ResumeHandshake } from "./resume-handshake.js";
import { StreamLog } from "./stream-log.js";
import { applyToolApproval, applyToolResult } from "./tool-parts.js";
import type {
  ChatOnFinish,
  ChatResponseResult,
  OnChatMessageOptions,
  SaveMessagesResult,
} from "./types.js";

interface Turn {
  requestId: string;
  continuation: boolean;
  clientTools: ClientToolSchema[] | undefined;
  body: Record<string, unknown> | undefined;
  /** Ids of the user messages the request carried. */
  originIds: string[] | undefined;
  /** Connections that get no `cf_agent_chat_messages` for this turn (they sent it). */
  exclude: string[];
}

/**
 * A chat agent with the API of `@cloudflare/ai-chat`'s `AIChatAgent`: override
 * `onChatMessage` and return an AI SDK stream response; Outpost streams it to every
 * connection in the official frames, persists the conversation in the instance's SQLite
 * database, resumes answers for clients that reconnect, and runs client tools and
 * approvals. Clients: `useAgentChat` from `outpost/ai-chat/react`, or the official hook.
 *
 * @example
 * export class Chat extends AIChatAgent<Env> {
 *   async onChatMessage(onFinish: ChatOnFinish, options?: OnChatMessageOptions) {
 *     const result = streamText({
 *       model, messages: await convertToModelMessages(this.messages),
 *       abortSignal: options?.abortSignal, onFinish,
 *     });
 *     return result.toUIMessageStreamResponse();
 *   }
 * }
 */
export class AIChatAgent<Env = unknown, State = unknown> extends Agent<Env, State> {
  /** The conversation, as persisted. Read it in `onChatMessage` to build the prompt. */
  messages: UIMessage[] = [];
  /** Keep only the newest N messages in storage (and in `messages`). Default: all. */
  maxPersistedMessages: number | undefined = undefined;

  readonly #store: MessageStore;
  readonly #log: StreamLog;
  readonly #resume: ResumeHandshake;
  /** Turns run one at a time, in the order they were asked for. */
  #turns: Promise<unknown> = Promise.resolve();
  readonly #aborts = new Map<string, AbortController>();
  #lastBody: Record<string, unknown> | undefined;
  #lastClientTools: ClientToolSchema[] | undefined;

  constructor(ctx: AgentContext, env: Env) {
    super(ctx, env);
    const sql = this.sql.bind(this);
    this.#store = new MessageStore(sql);
    this.#log = new StreamLog(sql);
    this.#resume = new ResumeHandshake(this.#log, (id) => this.getConnection(id));
    // The official class wraps the hooks the same way, so a subclass overrides them as usual
    // and still gets the chat behaviour around its own code.
    const onStart = this.onStart.bind(this);
    this.onStart = async () => {
      this.messages = this.#store.load();
      const context = this.#store.loadContext();
      this.#lastBody = context.body;
      this.#lastClientTools = context.clientTools as ClientToolSchema[] | undefined;
      await this.#recoverOrphan();
      return onStart();
    };
    const onConnect = this.onConnect.bind(this);
    this.onConnect = async (connection: Connection, connectionCtx: ConnectionContext) => {
      await onConnect(connection, connectionCtx);
      // After the identity frame: the instance sends it once onConnect has returned.
      setImmediate(() => this.#greet(connection));
    };
    const onMessage = this.onMessage.bind(this);
    this.onMessage = (connection: Connection, message: string | Buffer) => {
      const event = typeof message === "string" ? parseChatFrame(message) : undefined;
      if (event === undefined) return onMessage(connection, message);
      return this.#handle(connection, event);
    };
    const onClose = this.onClose.bind(this);
    this.onClose = (connection: Connection, code: number, reason: string, wasClean: boolean) => {
      this.#resume.forget(connection.id);
      // A client leaving mid-answer (a reload, a shutdown draining its sockets): what it saw
      // is on disk from here on, whatever happens to the process next.
      this.#log.flush();
      return onClose(connection, code, reason, wasClean);
    };
    const onRequest = this.onRequest.bind(this);
    this.onRequest = (request: Request) => {
      const url = new URL(request.url);
      if (request.method === "GET" && url.pathname.endsWith("/get-messages")) {
        return Response.json(this.messages);
      }
      return onRequest(request);
    };
  }

  /**
   * Answer the conversation in `this.messages`. Return a streamed AI SDK response
   * (`streamText(...).toUIMessageStreamResponse()`), a plain-text `Response`, or
   * `undefined` for no answer.
   */
  onChatMessage(
    _onFinish: ChatOnFinish,
    _options?: OnChatMessageOptions,
  ): Response | undefined | Promise<Response | undefined> {
    throw new Error("override onChatMessage() to answer chat messages");
  }

  /** A turn ended and its message is persisted. Safe to call `saveMessages` from here. */
  onChatResponse(_result: ChatResponseResult): void | Promise<void> {}

  /**
   * Store `messages` as the conversation and tell every connection, except those in
   * `excludeBroadcastIds`. Does not start a turn (see `saveMessages`).
   */
  async persistMessages(
    messages: readonly UIMessage[],
    excludeBroadcastIds: readonly string[] = [],
  ): Promise<void> {
    this.messages = this.#store.replace(messages, this.maxPersistedMessages);
    this.#broadcastFrame(
      { type: MessageType.CF_AGENT_CHAT_MESSAGES, messages: this.messages },
      excludeBroadcastIds,
    );
  }

  /**
   * Store `messages` (or what the function returns from the current ones) and answer
   * them, streaming to every connection, as if a client had sent them.
   */
  async saveMessages(
    messages: UIMessage[] | ((current: readonly UIMessage[]) => UIMessage[] | Promise<UIMessage[]>),
  ): Promise<SaveMessagesResult> {
    const next = typeof messages === "function" ? await messages(this.messages) : messages;
    await this.persistMessages(next);
    const requestId = generateId();
    return this.#enqueue(() =>
      this.#runTurn({
        requestId,
        continuation: false,
        clientTools: this.#lastClientTools,
        body: this.#lastBody,
        originIds: trailingUserIds(next),
        exclude: [],
      }),
    );
  }

  /** Cancel a running answer by its request id. */
  protected abortRequest(requestId: string, reason?: unknown): void {
    this.#aborts.get(requestId)?.abort(reason);
  }

  /** Cancel every running answer. */
  protected abortAllRequests(reason?: unknown): void {
    for (const controller of this.#aborts.values()) controller.abort(reason);
  }

  // --- frames ---

  #handle(connection: Connection, event: ChatClientEvent): void | Promise<void> {
    switch (event.type) {
      case "chat-request":
        return this.#chatRequest(connection, event.id, event.body);
      case "clear":
        return this.#clear(connection);
      case "messages":
        return this.persistMessages(event.messages, [connection.id]);
      case "cancel":
        this.abortRequest(event.id);
        return;
      case "resume-request":
        return this.#resume.request(connection, event.probeId);
      case "resume-ack":
        return this.#resume.ack(connection, event.id);
      case "tool-result":
        if (event.clientTools !== undefined && event.clientTools.length > 0) {
          this.#lastClientTools = event.clientTools;
          this.#store.saveContext({ body: this.#lastBody, clientTools: event.clientTools });
        }
        return this.#toolAnswer(connection, event.autoContinue, (messages) =>
          applyToolResult(messages, event),
        );
      case "tool-approval":
        return this.#toolAnswer(connection, event.autoContinue, (messages) =>
          applyToolApproval(messages, event.toolCallId, event.approved),
        );
    }
  }

  async #chatRequest(connection: Connection, requestId: string, text: string | undefined) {
    let parsed: { messages?: unknown; clientTools?: unknown; trigger?: unknown } & Record<
      string,
      unknown
    >;
    try {
      parsed = JSON.parse(text ?? "");
    } catch {
      return this.#refuse(connection, requestId, "The chat request body is not valid JSON");
    }
    const { messages, clientTools, trigger: _trigger, ...rest } = parsed ?? {};
    if (!Array.isArray(messages)) {
      return this.#refuse(connection, requestId, "The chat request carries no messages");
    }
    const body = Object.keys(rest).length > 0 ? rest : undefined;
    const tools =
      Array.isArray(clientTools) && clientTools.length > 0
        ? (clientTools as ClientToolSchema[])
        : undefined;
    this.#lastBody = body;
    this.#lastClientTools = tools;
    this.#store.saveContext({ body, clientTools: tools });
    await this.persistMessages(messages as UIMessage[], [connection.id]);
    // The turn runs beside later frames, so a cancel can reach it while it streams.
    this.#spawn(() =>
      this.#runTurn({
        requestId,
        continuation: false,
        clientTools: tools,
        body,
        originIds: trailingUserIds(messages as UIMessage[]),
        exclude: [connection.id],
      }),
    );
  }

  #refuse(connection: Connection, id: string, message: string): void {
    connection.send(
      JSON.stringify({
        type: MessageType.CF_AGENT_USE_CHAT_RESPONSE,
        id,
        body: message,
        done: true,
        error: true,
      } satisfies ChatResponseFrame),
    );
  }

  async #clear(connection: Connection): Promise<void> {
    this.abortAllRequests();
    this.#store.clear();
    this.#log.clear();
    this.messages = [];
    this.#lastBody = undefined;
    this.#lastClientTools = undefined;
    this.#resume.clear();
    this.#broadcastFrame({ type: MessageType.CF_AGENT_CHAT_CLEAR }, [connection.id]);
  }

  #toolAnswer(
    connection: Connection,
    autoContinue: boolean,
    apply: (messages: readonly UIMessage[]) => { index: number; message: UIMessage } | undefined,
  ): void {
    // Registered now, so a client asking to resume before the turn starts is told to wait.
    // The sender is offered the continuation when it starts, and gets its chunks once it
    // acknowledges: the official client attaches a continuation to the message holding the
    // tool call only through that handshake.
    const requestId = autoContinue ? generateId() : undefined;
    if (requestId !== undefined) {
      this.#resume.expect(requestId, connection.id);
    }
    // Behind the running turn: the tool call's message is persisted once that turn ends.
    this.#spawn(async (): Promise<SaveMessagesResult> => {
      const update = apply(this.messages);
      if (update !== undefined) {
        const messages = [...this.messages];
        messages[update.index] = update.message;
        this.messages = this.#store.replace(messages, this.maxPersistedMessages);
        this.#broadcastFrame({
          type: MessageType.CF_AGENT_MESSAGE_UPDATED,
          message: update.message,
        });
      }
      if (requestId === undefined) return { requestId: "", status: "skipped" };
      if (update === undefined) {
        this.#resume.settled(requestId);
        return { requestId, status: "skipped" };
      }
      return this.#runTurn({
        requestId,
        continuation: true,
        clientTools: this.#lastClientTools,
        body: this.#lastBody,
        originIds: undefined,
        // Everyone, the sender too, gets the stored message at the end: it is the one place
        // a client learns that the continuation belongs to the tool call's message.
        exclude: [],
      });
    });
  }

  // --- turns ---

  #enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#turns.then(() => this.keepAliveWhile(work));
    this.#turns = run.catch(() => {});
    return run;
  }

  /** Queue a turn nobody awaits: a failure (the database closed under it) is reported. */
  #spawn(work: () => Promise<unknown>): void {
    this.#enqueue(work).catch((error: unknown) => this.#reportError(error));
  }

  async #runTurn(turn: Turn): Promise<SaveMessagesResult> {
    const { requestId } = turn;
    const controller = new AbortController();
    this.#aborts.set(requestId, controller);
    try {
      let response: Response | undefined;
      try {
        response = await this.onChatMessage(async () => {}, {
          requestId,
          abortSignal: controller.signal,
          clientTools: turn.clientTools,
          body: turn.body,
          continuation: turn.continuation,
        });
      } catch (error) {
        this.#resume.settled(requestId);
        this.#reportError(error);
        const message = publicMessage(error);
        this.#terminal(turn, { body: message, error: true });
        return { requestId, status: "error", error: message };
      }
      if (response === undefined || response === null) {
        this.#resume.settled(requestId);
        this.#terminal(turn, {
          body: "No response was generated by the agent.",
          outcome: "completed",
        });
        return { requestId, status: "completed" };
      }
      return await this.#reply(turn, response, controller.signal);
    } finally {
      this.#aborts.delete(requestId);
    }
  }

  async #reply(turn: Turn, response: Response, signal: AbortSignal): Promise<SaveMessagesResult> {
    const { requestId, continuation } = turn;
    const last = this.messages.at(-1);
    const base = continuation && last?.role === "assistant" ? last : undefined;
    const messageId = base?.id ?? generateId();
    this.#log.start({ requestId, messageId, continuation, originIds: turn.originIds });
    this.#resume.started(requestId);
    const flag = continuation ? { continuation: true } : {};
    let result: ReplyResult;
    try {
      result = await streamReply({
        response,
        messageId,
        base,
        signal,
        sink: {
          chunk: (body) => {
            const seq = this.#log.append(body);
            this.#broadcastFrame({
              type: MessageType.CF_AGENT_USE_CHAT_RESPONSE,
              id: requestId,
              body,
              done: false,
              seq,
              ...flag,
            });
          },
          modelError: (errorText) =>
            this.#broadcastFrame({
              type: MessageType.CF_AGENT_USE_CHAT_RESPONSE,
              id: requestId,
              body: errorText,
              done: false,
              error: true,
              ...flag,
            }),
        },
      });
    } catch (error) {
      this.#log.finish("error");
      throw error;
    }
    this.#log.finish(result.outcome);
    if (result.message.parts.length > 0) {
      const messages = [...this.messages];
      const at = messages.findIndex((message) => message.id === result.message.id);
      if (at === -1) messages.push(result.message);
      else messages[at] = result.message;
      await this.persistMessages(messages, turn.exclude);
    }
    if (result.thrown) this.#terminal(turn, { body: result.error ?? "", error: true });
    else this.#terminal(turn, { body: "", outcome: result.outcome });
    const status = { requestId, status: result.outcome, error: result.error } as const;
    try {
      await this.onChatResponse({
        message: result.message,
        requestId,
        continuation,
        status: result.outcome,
        ...(result.error !== undefined && { error: result.error }),
      });
    } catch (error) {
      this.#reportError(error);
    }
    return status;
  }

  /** The terminal frame of a turn: `done`, with how it ended and whose messages it answers. */
  #terminal(
    turn: Turn,
    end: { body: string; error?: boolean; outcome?: ChatResponseFrame["outcome"] },
  ) {
    this.#broadcastFrame({
      type: MessageType.CF_AGENT_USE_CHAT_RESPONSE,
      id: turn.requestId,
      body: end.body,
      done: true,
      ...(end.error === true && { error: true }),
      ...(end.outcome !== undefined && { outcome: end.outcome }),
      ...(turn.continuation && { continuation: true }),
      ...(turn.originIds !== undefined && { messageIds: turn.originIds }),
    });
  }

  /** To the server log and `onError`, as any agent error; the client got its frame. */
  #reportError(error: unknown): void {
    runtimeOf(this as Agent<unknown, unknown>).reportError(undefined, error);
  }

  /** A new connection: the conversation, then (if an answer is streaming) an offer to resume. */
  #greet(connection: Connection): void {
    if (this.getConnection(connection.id) === undefined) return;
    connection.send(
      JSON.stringify({
        type: MessageType.CF_AGENT_CHAT_MESSAGES,
        messages: this.messages,
        connect: true,
      }),
    );
    this.#resume.offer(connection, undefined);
  }

  /**
   * An answer was streaming when the process stopped: what it had sent becomes the partial
   * assistant message, so the conversation a client reloads matches what it saw.
   */
  async #recoverOrphan(): Promise<void> {
    const orphan = this.#log.orphan();
    if (orphan === undefined) return;
    const chunks = parseStoredChunks(this.#log.chunks(orphan.requestId));
    const last = this.messages.at(-1);
    const base =
      orphan.continuation && last?.role === "assistant" && last.id === orphan.messageId
        ? last
        : undefined;
    const message = await buildMessage(chunks, orphan.messageId, base);
    this.#log.settleOrphan(orphan.requestId, "aborted");
    if (message.parts.length === 0) return;
    const messages = [...this.messages];
    const at = messages.findIndex((m) => m.id === message.id);
    if (at === -1) messages.push(message);
    else messages[at] = message;
    this.messages = this.#store.replace(messages, this.maxPersistedMessages);
  }

  /** To every connection but `exclude` and those about to be replayed the stream. */
  #broadcastFrame(frame: object, exclude: readonly string[] = []): void {
    this.broadcast(JSON.stringify(frame), this.#resume.without(exclude));
  }
}

/** Ids of the user messages at the end of `messages`: the ones a request asks about. */
function trailingUserIds(messages: readonly UIMessage[]): string[] | undefined {
  const ids: string[] = [];
  for (let i = messages.length - 1; i >= 0 && messages[i]?.role === "user"; i--) {
    ids.unshift(messages[i]!.id);
  }
  return ids.length > 0 ? ids : undefined;
}
