// A small component on useLangShazam: a Listen button, a level meter, and the answer in the words of its
// verdict (a confident partial "German…", a guess "maybe German?", a likely set "Croatian or Serbian?").

import { useLangShazam } from "./useLangShazam.js";

/** @param {import("langshazam").Answer | import("langshazam").Summary} data */
function words(data) {
  const top = "top" in data ? data.top : []; // a summary (continuous mode) has no top nor likely
  const names = Object.fromEntries(top.map((item) => [item.language, item.language_name]));
  const likely = ("likely" in data && data.likely ? data.likely : []).map((code) => names[code] || code);
  if (data.language && data.confident) return data.language_name;
  if (likely.length > 1) return `${likely.slice(0, -1).join(", ")} or ${likely[likely.length - 1]}?`;
  if (data.language) return `maybe ${data.language_name}?`;
  return data.reason === "no_speech" ? "No speech heard." : "Not sure.";
}

/** @param {{ url: string, languages?: string[] }} props */
export function LanguageButton({ url, languages }) {
  const { state, partial, answer, error, level, start, stop } = useLangShazam({ url, languages });
  const listening = state === "starting" || state === "listening";
  const text = error ? error.message : answer ? words(answer) : partial?.language ? `${words(partial)}…` : listening ? "Listening…" : "";
  return (
    <div className="langshazam" data-state={state}>
      <button type="button" onClick={listening ? stop : start} disabled={state === "stopping"}>
        {listening ? "Stop" : "Listen"}
      </button>
      <meter min={0} max={1} value={level} aria-label="Microphone level" />
      <p aria-live="polite" data-language={answer?.language ?? ""}>{text}</p>
    </div>
  );
}
