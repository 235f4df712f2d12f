import { Agent, type Connection, callable } from "outpost";

interface CounterState {
  count: number;
}

/** The smallest useful agent: a shared counter. Open two clients and watch it sync. */
export class Counter extends Agent<unknown, CounterState> {
  override initialState = { count: 0 };

  @callable()
  increment(by = 1) {
    this.setState({ count: this.state.count + by });
    return this.state.count;
  }

  override onConnect(connection: Connection) {
    connection.send(
      JSON.stringify({ type: "welcome", connections: [...this.getConnections()].length }),
    );
  }
}
