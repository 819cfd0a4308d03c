// The example app: one LanguageButton, talking to the server named in ?server= (default localhost:10000).

import { createRoot } from "react-dom/client";
import { LanguageButton } from "./LanguageButton.jsx";

const server = new URLSearchParams(location.search).get("server") ?? "http://localhost:10000";
const root = document.getElementById("root");
if (root) createRoot(root).render(<LanguageButton url={server} />);
