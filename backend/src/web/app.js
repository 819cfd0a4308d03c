// LangShazam's page: the UI on top of the client library (/client/langshazam.js holds all the protocol:
// microphone, recorder, /ws, retries, errors). This file only draws.
//
// The words follow the honesty verdict of each answer: while listening a confident partial reads
// "German…", a guess "maybe German?", a likely set "Croatian or Serbian?"; the one final statement comes
// when the server ends the stream (on the speaker's pause, when it is sure, on Stop, or at its time
// limit). "Not sure" offers the top candidates to retry with.

import { listen } from "../client/langshazam.js";
import { LANGUAGES } from "./languages.js";

const $ = (id) => document.getElementById(id);
const ui = {
  listen: $("listen"), status: $("status"), level: $("level"), guess: $("guess"), tentative: $("tentative"),
  guessLabel: $("guess-label"), guessName: $("guess-name"), guessConfidence: $("guess-confidence"),
  bars: $("bars"), limit: $("limit"), langs: $("langs"), langsError: $("langs-error"), server: $("server"),
  maybe: $("maybe"), chips: $("chips"), retry: $("retry"), picker: document.querySelector(".picker"),
  continuous: $("continuous"), timeline: $("timeline"),
};

const REASONS = {
  no_speech: ["No speech heard", "Try again, closer to the microphone."],
  too_short: ["Too short", "Too little speech to tell. Say a whole sentence."],
  uncertain: ["Not sure", "It could not tell which language that was."],
};
const ENDINGS = {
  end_of_speech: "Stopped by itself when you paused.",
  confident: "Sure enough: it stopped early.",
  no_speech: "Stopped: it heard no speech.",
  max_duration: "Stopped at the time limit.",
  stop: "Stopped.",
  shutdown: "The server is restarting: answered on what it heard.",
};
// Errors the page words its own way (the library's messages speak to the developer calling it).
const PAGE_ERRORS = {
  key: "This server needs an API key, which this page does not send: call it from your own page with the client library and apiKey.",
};
// Browser language tags whose ISO 639-1 code differs from Whisper's.
const ALIASES = { nb: "no", iw: "he", in: "id", ji: "yi", jv: "jw", fil: "tl" };
const CHIPS = 3; // candidates offered on "Not sure"

let current = null; // the listening under way, if any: { controller, session }

// The page talks to its own server; `?server=` may name another only when its server lists it
// (UI_SERVERS, read from ./config.json), so that a link cannot send the microphone elsewhere.
const OWN_SERVER = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const ASKED_SERVER = new URLSearchParams(location.search).get("server");
const sameUrl = (a, b) => {
  try {
    return new URL(a).href === new URL(b).href;
  } catch {
    return false;
  }
};
const SERVER = (async () => {
  if (!ASKED_SERVER || sameUrl(ASKED_SERVER, OWN_SERVER)) return { url: OWN_SERVER };
  let listed = [];
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) listed = (await response.json()).servers || [];
  } catch {
    // unreadable: only the page's own server
  }
  if (listed.some((url) => sameUrl(url, ASKED_SERVER))) return { url: ASKED_SERVER };
  return {
    url: null,
    refusal: `This page connects only to its own server (${OWN_SERVER}) and those it lists in UI_SERVERS: ${ASKED_SERVER} is not one of them.`,
  };
})();

const toCode = (tag) => {
  const code = tag.trim().toLowerCase().split(/[-_]/)[0];
  return ALIASES[code] || code;
};

// Browser languages -> the codes the server knows (for the prefilled field; unknown ones left out).
function knownCodes(tags) {
  return [...new Set(tags.map(toCode).filter((code) => code in LANGUAGES))];
}

// What the user typed: the codes, and those the server would not know.
function parseField(text) {
  const codes = [...new Set(text.split(/[\s,;]+/).filter(Boolean).map(toCode))];
  return { codes, unknown: codes.filter((code) => !(code in LANGUAGES)) };
}

const pct = (p) => (typeof p !== "number" ? "–" : p > 0 && p < 0.005 ? "<1%" : `${Math.round(p * 100)}%`);

// "Croatian or Serbian?" / "Czech, Slovak or Polish?"
function either(names) {
  return `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}?`;
}

// The likely set's names when it holds two or three languages (else null).
function likelyNames(data) {
  const likely = data.likely || [];
  if (likely.length < 2 || likely.length > 3) return null;
  const named = Object.fromEntries((data.top || []).map((item) => [item.language, item.language_name]));
  return likely.map((code) => named[code] || LANGUAGES[code] || code);
}

// A partial answer in the words of its verdict.
function partialWords(data) {
  const set = likelyNames(data);
  if (data.language && data.confident) return `${data.language_name}…`;
  if (set) return either(set);
  if (data.language) return `maybe ${data.language_name}?`;
  const top = (data.top || [])[0];
  return top ? `not sure yet (maybe ${top.language_name}?)` : "listening…";
}

function setState(state) {
  document.body.dataset.state = state;
  const busy = state === "listening" || state === "starting";
  ui.listen.textContent = busy ? "Stop" : state === "stopping" ? "Working…" : "Listen";
  ui.listen.disabled = state === "stopping";
}

function say(text) {
  ui.status.textContent = text;
}

// Continuous mode: one coloured span per utterance, its width its length in time.
function renderTimeline(segments) {
  // One hue per language, in order of appearance, a golden angle apart: always distinct side by side.
  const order = [...new Set(segments.map((segment) => segment.language).filter(Boolean))];
  const hue = (code) => Math.round((210 + order.indexOf(code) * 137.508) % 360);
  ui.timeline.hidden = !segments.length;
  ui.timeline.replaceChildren(...segments.map((segment) => {
    const li = document.createElement("li");
    li.dataset.language = segment.language || "";
    li.className = segment.language ? "span" : "span span-unknown";
    if (segment.language) li.style.setProperty("--hue", hue(segment.language));
    li.style.flexGrow = String(Math.max(0.3, segment.end - segment.start));
    const name = segment.language ? segment.language_name : "Not sure";
    li.textContent = name;
    li.title = `${name}, ${segment.start.toFixed(1)}–${segment.end.toFixed(1)} s`;
    return li;
  }));
}

function clearResult() {
  ui.timeline.hidden = true;
  ui.timeline.replaceChildren();
  ui.guess.hidden = true;
  delete ui.guess.dataset.language;
  delete ui.guess.dataset.confident;
  delete document.body.dataset.endedBy;
  ui.tentative.hidden = true;
  ui.tentative.textContent = "";
  ui.maybe.hidden = true;
  ui.chips.replaceChildren();
  ui.bars.replaceChildren();
  ui.bars.dataset.updates = "0";
  ui.bars.classList.remove("final");
}

function renderBars(top) {
  ui.bars.replaceChildren(...top.map((item) => {
    const li = document.createElement("li");
    li.dataset.language = item.language;
    const name = Object.assign(document.createElement("span"), { className: "bar-name", textContent: item.language_name });
    const track = Object.assign(document.createElement("span"), { className: "bar-track" });
    const fill = Object.assign(document.createElement("span"), { className: "bar-fill" });
    fill.style.width = `${Math.round((item.probability || 0) * 100)}%`;
    track.append(fill);
    track.setAttribute("aria-hidden", "true");
    const value = Object.assign(document.createElement("span"), { className: "bar-pct", textContent: pct(item.probability) });
    li.append(name, track, value);
    return li;
  }));
  ui.bars.dataset.updates = String(Number(ui.bars.dataset.updates || 0) + 1);
}

// A partial answer: small, in the words of its verdict; never the answer.
function showPartial(data) {
  renderBars(data.top || []);
  ui.tentative.hidden = false;
  ui.tentative.dataset.confident = String(Boolean(data.confident));
  ui.tentative.textContent = partialWords(data);
}

// The final answer: one statement.
function showFinal(data) {
  ui.tentative.hidden = true;
  renderBars(data.top || []);
  ui.bars.classList.add("final");
  ui.guess.hidden = false;
  document.body.dataset.endedBy = data.ended_by || "";
  const set = likelyNames(data);
  ui.guess.dataset.language = data.language || "";
  ui.guess.dataset.confident = String(Boolean(data.confident && data.language));
  if (data.language && data.confident) {
    ui.guessLabel.textContent = "Answer";
    ui.guessName.textContent = data.language_name;
    ui.guessConfidence.textContent = `${pct(data.confidence)} sure`;
  } else if (set) {
    ui.guessLabel.textContent = "Not sure which";
    ui.guessName.textContent = either(set);
    ui.guessConfidence.textContent = "probably one of these";
    const top = Object.fromEntries((data.top || []).map((item) => [item.language, item]));
    offerCandidates(data.likely.map((code, i) => top[code] || { language: code, language_name: set[i] }));
  } else if (data.language) {
    ui.guessLabel.textContent = "Best guess, not sure";
    ui.guessName.textContent = data.language_name;
    ui.guessConfidence.textContent = data.fallback
      ? "probably: it could not tell, so it names the fallback language"
      : data.confidence == null ? "probably" : `probably (${pct(data.confidence)})`;
  } else {
    const [title, sentence] = REASONS[data.reason] || ["No answer", ""];
    ui.guessLabel.textContent = "Answer";
    ui.guessName.textContent = title;
    ui.guessConfidence.textContent = sentence;
    if (data.reason === "uncertain") offerCandidates(data.top || []);
  }
  say(ENDINGS[data.ended_by] || "Done.");
}

// Continuous mode's summary: the timeline and how long each language was spoken.
function showSummary(data) {
  ui.tentative.hidden = true;
  renderTimeline(data.segments || []);
  renderBars([]);
  const spoken = (data.languages || []).map((item) => `${item.language_name} (${item.seconds.toFixed(1)} s)`);
  say(spoken.length ? `Languages spoken: ${spoken.join(", ")}.` : (REASONS[data.reason] || ["", "No answer."])[1]);
}

// "Not sure": the top candidates, ticked, and one tap to try again among them.
function offerCandidates(top) {
  const candidates = top.filter((item) => item.language in LANGUAGES).slice(0, CHIPS);
  if (!candidates.length) return;
  ui.chips.replaceChildren(...candidates.map((item) => {
    const chip = Object.assign(document.createElement("button"), {
      type: "button", className: "chip", textContent: item.language_name,
    });
    chip.dataset.language = item.language;
    chip.setAttribute("aria-pressed", "true");
    chip.addEventListener("click", () => {
      chip.setAttribute("aria-pressed", chip.getAttribute("aria-pressed") === "true" ? "false" : "true");
      ui.retry.disabled = !ui.chips.querySelector('[aria-pressed="true"]');
    });
    return chip;
  }));
  ui.retry.disabled = false;
  ui.maybe.hidden = false;
}

function retryWithCandidates() {
  const codes = [...ui.chips.querySelectorAll('[aria-pressed="true"]')].map((chip) => chip.dataset.language);
  if (!codes.length || current) return;
  ui.limit.checked = true;
  ui.langs.value = codes.join(", ");
  start();
}

// The languages to send, or null; false (with the message shown) when the field has a problem.
function chosenLanguages() {
  ui.langsError.textContent = "";
  if (!ui.limit.checked) return null;
  const { codes, unknown } = parseField(ui.langs.value);
  if (unknown.length) {
    const message = `Unknown language code${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}. Use ISO 639-1 codes such as en, es, fr.`;
    ui.langsError.textContent = message;
    ui.picker.open = true;
    say(message);
    return false;
  }
  if (!codes.length) {
    say("Enter at least one language code, or untick “Only consider these languages”.");
    return false;
  }
  return codes;
}

async function start() {
  const languages = chosenLanguages();
  if (languages === false) return setState("error");
  const continuous = ui.continuous.checked;
  const run = (current = { controller: new AbortController(), session: null });
  const live = () => current === run;
  const segments = [];
  document.body.dataset.mode = continuous ? "continuous" : "stream";
  clearResult();
  setState("starting");
  say("Starting…");
  try {
    const server = await SERVER;
    if (!server.url) throw new Error(server.refusal);
    run.session = await listen({
      url: server.url,
      mode: continuous ? "continuous" : "stream",
      languages: languages || undefined,
      signal: run.controller.signal,
      onPartial: (data) => live() && showPartial(data),
      onSegment: (data) => {
        if (!live()) return;
        segments.push(data);
        renderTimeline(segments);
        showPartial(data);
      },
      onLevel: (level) => (ui.level.style.transform = `scaleX(${live() ? level : 0})`),
    });
    if (!live()) return;
    if (document.body.dataset.state === "starting") {
      setState("listening");
      say(continuous ? "Listening… speak, switch languages, press Stop when done." : "Listening… speak now.");
    }
    const data = await run.session.result;
    if (!live()) return;
    (continuous ? showSummary : showFinal)(data);
    finish(run, "done");
  } catch (error) {
    if (!live()) return;
    if (run.controller.signal.aborted) {
      say("Stopped.");
      return finish(run, "idle");
    }
    say(PAGE_ERRORS[error.code] || error.message);
    finish(run, "error");
  }
}

function finish(run, state) {
  if (current !== run) return;
  current = null;
  ui.level.style.transform = "scaleX(0)";
  setState(state);
}

function stop() {
  if (!current.session) return current.controller.abort(); // not listening yet: cancel
  setState("stopping");
  say("Working out the answer…");
  current.session.stop();
}

ui.listen.addEventListener("click", () => (current ? stop() : start()));
ui.retry.addEventListener("click", retryWithCandidates);
ui.langs.addEventListener("input", () => (ui.langsError.textContent = ""));
ui.langs.value = knownCodes(navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]).join(", ");
ui.server.textContent = OWN_SERVER;
SERVER.then((server) => {
  ui.server.textContent = server.url || OWN_SERVER;
  if (!server.url) say(server.refusal);
});
window.addEventListener("pagehide", () => current && current.controller.abort());
