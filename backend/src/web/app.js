// LangShazam's page: record the microphone, stream it to /ws in stream mode, show the answers live.
// Protocol: README.md, "WebSocket protocol (/ws)".
//
// While listening, partial answers are shown small and tentative ("maybe Spanish?"); the one final
// statement comes when the server ends the stream: on the speaker's pause (it stops by itself), when it
// is sure, on Stop, or at its time limit. "Not sure" offers the top candidates to retry with.

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
// Browser language tags whose ISO 639-1 code differs from Whisper's.
const ALIASES = { nb: "no", iw: "he", in: "id", ji: "yi", jv: "jw", fil: "tl" };
const MIME_TYPES = ["audio/webm;codecs=opus", "audio/webm", "audio/mp4", "audio/ogg;codecs=opus"];
const CLOSE_TRY_AGAIN_LATER = 1013;
const RETRY_DELAY_MS = 1000;
const CHIPS = 3; // candidates offered on "Not sure"

let session = null; // the recording under way, if any

function serverUrl() {
  const override = new URLSearchParams(location.search).get("server");
  return override || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

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

function setState(state) {
  document.body.dataset.state = state;
  const busy = state === "listening" || state === "starting";
  ui.listen.textContent = busy ? "Stop" : state === "stopping" ? "Working…" : "Listen";
  ui.listen.disabled = state === "stopping";
}

function say(text) {
  ui.status.textContent = text;
}

function micMessage(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow the microphone for this site in the browser's settings, then try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone found. Connect one and try again.";
    case "NotReadableError":
      return "The microphone could not be opened; another app may be using it.";
    default:
      return `Could not open the microphone: ${err && err.message ? err.message : err}`;
  }
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

// A partial answer: small and tentative, never the answer.
function showPartial(data) {
  renderBars(data.top || []);
  ui.tentative.hidden = false;
  const top = (data.top || [])[0];
  ui.tentative.textContent = data.language
    ? `maybe ${data.language_name}?`
    : top ? `not sure yet (maybe ${top.language_name}?)` : "listening…";
}

// The final answer: one statement.
function showFinal(data) {
  ui.tentative.hidden = true;
  renderBars(data.top || []);
  ui.bars.classList.add("final");
  ui.guess.hidden = false;
  document.body.dataset.endedBy = data.ended_by || "";
  if (data.language) {
    ui.guess.dataset.language = data.language;
    ui.guess.dataset.confident = String(Boolean(data.confident));
    ui.guessName.textContent = data.language_name;
    if (data.confident) {
      ui.guessLabel.textContent = "Answer";
      ui.guessConfidence.textContent = `${pct(data.confidence)} sure`;
    } else {
      ui.guessLabel.textContent = "Best guess, not sure";
      ui.guessConfidence.textContent = data.confidence == null ? "probably" : `probably (${pct(data.confidence)})`;
    }
  } else {
    const [title, sentence] = REASONS[data.reason] || ["No answer", ""];
    ui.guess.dataset.language = "";
    ui.guess.dataset.confident = "false";
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
  if (!codes.length || session) return;
  ui.limit.checked = true;
  ui.langs.value = codes.join(", ");
  start();
}

function startMeter(s) {
  if (!s.audio) return;
  const analyser = s.audio.createAnalyser();
  analyser.fftSize = 1024;
  s.audio.createMediaStreamSource(s.stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, v) => sum + v * v, 0) / samples.length);
    const level = Math.max(0, Math.min(1, (20 * Math.log10(rms + 1e-9) + 60) / 60)); // -60..0 dBFS
    ui.level.style.transform = `scaleX(${level})`;
    s.frame = requestAnimationFrame(tick);
  };
  tick();
}

function closeConnection(c) {
  if (!c) return;
  c.closed = true;
  if (c.recorder && c.recorder.state !== "inactive") c.recorder.stop();
  if (c.ws && c.ws.readyState <= WebSocket.OPEN) c.ws.close(1000);
}

// Release the microphone, the meter and the socket; the session is over.
function end(s, state) {
  s.done = true;
  closeConnection(s.conn);
  if (s.stream) s.stream.getTracks().forEach((track) => track.stop());
  cancelAnimationFrame(s.frame);
  if (s.audio) s.audio.close().catch(() => {});
  ui.level.style.transform = "scaleX(0)";
  if (session === s) {
    session = null;
    setState(state);
  }
}

function fail(s, message) {
  if (session !== s) return;
  say(message);
  end(s, "error");
}

// One WebSocket connection and its recorder; a busy server (1013) gets one more try.
function connect(s, url, languages) {
  const c = { opened: false, closed: false, error: null };
  s.conn = c;
  try {
    c.ws = new WebSocket(url);
  } catch (err) {
    return fail(s, `Bad server address ${url}: ${err.message}`);
  }
  c.ws.onopen = () => {
    c.opened = true;
    c.ws.send(JSON.stringify({ type: "start", mode: s.continuous ? "continuous" : "stream", ...(languages && { languages }) }));
    const mimeType = MIME_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    c.recorder = new MediaRecorder(s.stream, mimeType ? { mimeType } : undefined);
    c.recorder.ondataavailable = (event) => {
      if (!c.closed && event.data.size && c.ws.readyState === WebSocket.OPEN) c.ws.send(event.data);
    };
    // recorder.stop() fires a last dataavailable, then stop: only then ask for the answer.
    c.recorder.onstop = () => {
      if (!c.closed && !s.done && c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify({ type: "stop" }));
    };
    c.recorder.start(250);
    if (session === s && document.body.dataset.state !== "stopping") {
      setState("listening");
      say(s.continuous ? "Listening… speak, switch languages, press Stop when done." : "Listening… speak now.");
    }
  };
  c.ws.onmessage = (event) => {
    if (session !== s || s.conn !== c) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.status === "partial") {
      showPartial(message.data);
    } else if (message.status === "segment") {
      s.segments.push(message.data);
      renderTimeline(s.segments);
      showPartial(message.data);
    } else if (message.status === "success" && s.continuous) {
      showSummary(message.data);
      end(s, "done");
    } else if (message.status === "success") {
      showFinal(message.data);
      end(s, "done");
    } else if (message.status === "error") {
      c.error = message.message; // the close code that follows says whether to try again
    }
  };
  c.ws.onclose = (event) => {
    if (s.done || session !== s || s.conn !== c) return;
    if (event.code === CLOSE_TRY_AGAIN_LATER && !s.retried) {
      s.retried = true;
      closeConnection(c);
      say("The server is busy; trying again…");
      setTimeout(() => session === s && !s.done && connect(s, url, languages), RETRY_DELAY_MS);
      return;
    }
    if (c.error) return fail(s, `The server said: ${c.error}`);
    fail(s, c.opened
      ? `The server closed the connection before answering (code ${event.code}${event.reason ? `: ${event.reason}` : ""}).`
      : `Cannot reach the LangShazam server at ${url}. Is it running?`);
  };
}

async function start() {
  ui.langsError.textContent = "";
  let languages = null;
  if (ui.limit.checked) {
    const { codes, unknown } = parseField(ui.langs.value);
    if (unknown.length) {
      const message = `Unknown language code${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}. Use ISO 639-1 codes such as en, es, fr.`;
      ui.langsError.textContent = message;
      ui.picker.open = true;
      say(message);
      setState("error");
      return;
    }
    if (!codes.length) {
      say("Enter at least one language code, or untick “Only consider these languages”.");
      setState("error");
      return;
    }
    languages = codes;
  }
  const s = (session = { done: false, retried: false, continuous: ui.continuous.checked, segments: [] });
  document.body.dataset.mode = s.continuous ? "continuous" : "stream";
  clearResult();
  setState("starting");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
    return fail(s, "This browser cannot record audio here. Use a current browser, on https or localhost.");
  }
  const AudioContext = window.AudioContext || window.webkitAudioContext;
  if (AudioContext) s.audio = new AudioContext(); // created in the click, so it may run
  say("Asking for the microphone…");
  try {
    s.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    return fail(s, micMessage(err));
  }
  if (session !== s) return end(s, "idle"); // stopped while the browser was asking
  startMeter(s);
  say("Connecting…");
  connect(s, serverUrl(), languages);
}

function stop() {
  const s = session;
  const c = s.conn;
  if (!c || !c.recorder) {
    say("Stopped."); // not streaming yet: just cancel
    return end(s, "idle");
  }
  setState("stopping");
  say("Working out the answer…");
  if (c.recorder.state !== "inactive") c.recorder.stop();
  s.stream.getTracks().forEach((track) => track.stop());
}

ui.listen.addEventListener("click", () => (session ? stop() : start()));
ui.retry.addEventListener("click", retryWithCandidates);
ui.langs.addEventListener("input", () => (ui.langsError.textContent = ""));
ui.langs.value = knownCodes(navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]).join(", ");
ui.server.textContent = serverUrl();
window.addEventListener("pagehide", () => session && end(session, "idle"));
