/**
 * WebSocket subprotocol names. A token may travel as a subprotocol (browsers cannot set
 * headers on a WebSocket); the server then selects the plain `outpost` protocol, so the
 * token is never echoed back in a response header.
 */

/** The subprotocol an Outpost client offers; the server selects it when the token rides along. */
export const OUTPOST_PROTOCOL = "outpost";

/** Prefix of the subprotocol that carries a token: `outpost.bearer.<jwt>`. */
export const BEARER_PROTOCOL_PREFIX = "outpost.bearer.";
