// LangShazam's page: record the microphone, stream it to /ws in stream mode, show the answers live.
// Protocol: README.md, "WebSocket protocol (/ws)".

const $ = (id) => document.getElementById(id);
const ui = {
  listen: $("listen"), status: $("status"), level: $("level"), guess: $("guess"),
  guessLabel: $("guess-label"), guessName: $("guess-name"), guessConfidence: $("guess-confidence"),
  bars: $("bars"), limit: $("limit"), langs: $("langs"), server: $("server"),
  continuous: $("continuous"), timeline: $("timeline"),
};

const REASONS = {
  no_speech: ["No speech heard", "No speech heard. Try again, closer to the microphone."],
  too_short: ["Too short", "Too little speech to tell. Speak for a few seconds."],
  uncertain: ["Not sure", "Not sure which language that was. The closest candidates:"],
};
// Browser language tags whose ISO 639-1 code differs from Whisper's.
const ALIASES = { nb: "no", iw: "he", in: "id", ji: "yi", jv: "jw", fil: "tl" };
const MIME_TYPES = ["audio/webm;codecs=opus", "audio/webm", "audio/mp4", "audio/ogg;codecs=opus"];

let session = null; // the recording under way, if any

function serverUrl() {
  const override = new URLSearchParams(location.search).get("server");
  return override || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

function toCodes(tags) {
  const codes = tags
    .map((tag) => tag.trim().toLowerCase().split(/[-_]/)[0])
    .map((code) => ALIASES[code] || code)
    .filter((code) => /^[a-z]{2,3}$/.test(code));
  return [...new Set(codes)];
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
  ui.bars.replaceChildren();
  ui.bars.dataset.updates = "0";
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

function showAnswer(data, final) {
  renderBars(data.top || []);
  ui.guess.hidden = false;
  ui.guessLabel.textContent = final ? "Answer" : "Best guess so far";
  if (data.language) {
    ui.guess.dataset.language = data.language;
    ui.guessName.textContent = data.language_name;
    ui.guessConfidence.textContent = data.confidence == null ? "" : `${pct(data.confidence)} sure`;
    if (final) {
      const sure = data.confidence == null ? "" : ` (${pct(data.confidence)} sure)`;
      say(`It's ${data.language_name}${sure}.`);
    }
  } else if (final) {
    const [title, sentence] = REASONS[data.reason] || ["No answer", "No answer."];
    ui.guess.dataset.language = "";
    ui.guessName.textContent = title;
    ui.guessConfidence.textContent = "";
    say(sentence);
  }
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

// Release the microphone, the meter and the socket; the session is over.
function end(s, state) {
  s.done = true;
  if (s.recorder && s.recorder.state !== "inactive") s.recorder.stop();
  if (s.stream) s.stream.getTracks().forEach((track) => track.stop());
  cancelAnimationFrame(s.frame);
  if (s.audio) s.audio.close().catch(() => {});
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000);
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

async function start() {
  const s = (session = { done: false, opened: false, continuous: ui.continuous.checked, segments: [] });
  clearResult();
  setState("starting");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
    return fail(s, "This browser cannot record audio here. Use a current browser, on https or localhost.");
  }
  let languages = null;
  if (ui.limit.checked) {
    languages = toCodes(ui.langs.value.split(/[\s,;]+/));
    if (!languages.length) return fail(s, "Enter at least one language code, or untick “Only consider these languages”.");
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

  const url = serverUrl();
  say("Connecting…");
  try {
    s.ws = new WebSocket(url);
  } catch (err) {
    return fail(s, `Bad server address ${url}: ${err.message}`);
  }
  s.ws.onopen = () => {
    s.opened = true;
    s.ws.send(JSON.stringify({ type: "start", mode: s.continuous ? "continuous" : "stream", ...(languages && { languages }) }));
    const mimeType = MIME_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    s.recorder = new MediaRecorder(s.stream, mimeType ? { mimeType } : undefined);
    s.recorder.ondataavailable = (event) => {
      if (event.data.size && s.ws.readyState === WebSocket.OPEN) s.ws.send(event.data);
    };
    // recorder.stop() fires a last dataavailable, then stop: only then ask for the answer.
    s.recorder.onstop = () => {
      if (!s.done && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify({ type: "stop" }));
    };
    s.recorder.start(250);
    setState("listening");
    say(s.continuous ? "Listening… speak, switch languages, press Stop when done." : "Listening… speak now.");
  };
  s.ws.onmessage = (event) => {
    if (session !== s) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.status === "partial") {
      showAnswer(message.data, false);
    } else if (message.status === "segment") {
      s.segments.push(message.data);
      renderTimeline(s.segments);
      showAnswer(message.data, false);
      ui.guessLabel.textContent = "Last said";
    } else if (message.status === "success" && s.continuous) {
      renderTimeline(message.data.segments || []);
      renderBars([]);
      ui.guess.hidden = true;
      const spoken = (message.data.languages || []).map((item) => `${item.language_name} (${item.seconds.toFixed(1)} s)`);
      say(spoken.length ? `Languages spoken: ${spoken.join(", ")}.` : (REASONS[message.data.reason] || ["", "No answer."])[1]);
      end(s, "done");
    } else if (message.status === "success") {
      showAnswer(message.data, true);
      end(s, "done");
    } else if (message.status === "error") {
      fail(s, `The server said: ${message.message}`);
    }
  };
  s.ws.onclose = (event) => {
    if (s.done || session !== s) return;
    fail(s, s.opened
      ? `The server closed the connection before answering (code ${event.code}${event.reason ? `: ${event.reason}` : ""}).`
      : `Cannot reach the LangShazam server at ${url}. Is it running?`);
  };
}

function stop() {
  const s = session;
  if (!s.recorder) {
    say("Stopped."); // not streaming yet: just cancel
    return end(s, "idle");
  }
  setState("stopping");
  say("Working out the answer…");
  if (s.recorder.state !== "inactive") s.recorder.stop();
  s.stream.getTracks().forEach((track) => track.stop());
}

ui.listen.addEventListener("click", () => (session ? stop() : start()));
ui.langs.value = toCodes(navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]).join(", ");
ui.server.textContent = serverUrl();
window.addEventListener("pagehide", () => session && end(session, "idle"));
