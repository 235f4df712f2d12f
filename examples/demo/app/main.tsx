import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App.js";
import { loadSession } from "./session.js";
import "./styles.css";

const root = createRoot(document.getElementById("root")!);
loadSession().then((session) => {
  root.render(
    <StrictMode>
      <App initial={session} />
    </StrictMode>,
  );
});
