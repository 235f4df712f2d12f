/** `"<kebab-agent>/<name>"`, the instance's key in `owners` and in the change log. */
export function instanceKey(agent: string, name: string): string {
  return `${agent}/${name}`;
}
