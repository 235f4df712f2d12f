// `agents/vite` (a Vite 8 plugin for Workers builds) is the only part of the `agents`
// devDependency that loads Babel 8 and @rolldown/plugin-babel, and Outpost never uses it.
// Those packages need Node 22.12+, so package.json's overrides put this folder in their place
// to keep `npm ci` quiet on Node 20; anything that does load them gets this error.
throw new Error(
  "agents/vite is not installed in Outpost's development tree: its Babel 8 dependencies are " +
    "replaced by overrides/agents-vite-unused (see package.json overrides)",
);
