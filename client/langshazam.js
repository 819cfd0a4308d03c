// langshazam.js: LangShazam in a web page. No dependencies; an ES module for browsers and bundlers.
//
//   import { listen } from "https://your-server/client/langshazam.js";
//   const session = await listen({ url: "https://your-server", onPartial: (data) => show(data) });
//   const answer = await session.result; // { language, language_name, confidence, confident, top, ... }
//
// All of LangShazam's browser protocol is here (docs/protocol.md): the recorder type, 250 ms
// chunks, the options in the query string, partial / segment / final messages, one retry on a busy server
// (close 1013; after the server's retry_after when it sends one, at most 5 s), close codes and HTTP
// statuses mapped to LangShazamError codes. Types: langshazam.d.ts.

/** What a LangShazamError is about; each message says what to do. */
export const ERROR_CODES = Object.freeze([
  "origin", "key", "too_big", "bad_audio", "bad_request", "busy", "engine", "network", "microphone",
]);

/** An error from LangShazam (or from getting there), with a `code` from ERROR_CODES. */
export class LangShazamError extends Error {
  /**
   * @param {string} code one of ERROR_CODES
   * @param {string} message what went wrong and what to do
   * @param {{ serverMessage?: string, closeCode?: number, status?: number, cause?: unknown }} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "LangShazamError";
    this.code = code;
    this.serverMessage = details.serverMessage;
    this.closeCode = details.closeCode;
    this.status = details.status;
  }
}

/** Recorder types in order of preference: webm/opus (Chromium, Firefox), mp4 (Safari), ogg. */
export const RECORDER_TYPES = Object.freeze(["audio/webm;codecs=opus", "audio/webm", "audio/mp4", "audio/ogg;codecs=opus"]);
const CHUNK_MS = 250;
const RETRY_DELAY_MS = 1000;
const MAX_RETRY_DELAY_MS = 5000;
const CLOSE = { goingAway: 1001, unsupported: 1003, policy: 1008, tooBig: 1009, internal: 1011, tryAgain: 1013 };

/** The first recorder type this browser records ("" when none is known: the browser's default). */
export function recorderType() {
  return RECORDER_TYPES.find((type) => MediaRecorder.isTypeSupported(type)) || "";
}

// --- addresses and options ----------------------------------------------------------------------------

function serverUrl(url, path, scheme) {
  if (!url) throw new TypeError("LangShazam: `url` is needed: the server's address, such as http://localhost:10000");
  const base = typeof location === "undefined" ? undefined : location.href;
  const address = new URL(String(url), base);
  const secure = address.protocol === "https:" || address.protocol === "wss:";
  address.protocol = scheme + (secure ? "s:" : ":");
  if (address.pathname === "/" || address.pathname === "") address.pathname = path;
  return address;
}

// Query options in the server's names; undefined ones are not sent (a server that predates an option
// ignores it, but only what the caller asked for goes on the wire).
function serverOptions(options) {
  const languages = Array.isArray(options.languages) ? options.languages.join(",") : options.languages;
  return {
    languages: languages || undefined,
    top_k: options.topK,
    min_confidence: options.minConfidence,
    fallback_language: options.fallbackLanguage || undefined,
  };
}

function withQuery(address, query) {
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null) address.searchParams.set(name, String(value));
  }
  return address.href;
}

// --- errors -------------------------------------------------------------------------------------------

const pageOrigin = () => (typeof location === "undefined" ? "this page's origin" : location.origin);

function refused(code, said, details) {
  const quoted = said ? ` (the server said: ${said})` : "";
  const messages = {
    origin: `The LangShazam server does not accept pages from ${pageOrigin()}: add that origin to the server's CORS_ORIGINS setting and restart it.`,
    key: details.apiKey
      ? `The LangShazam server refused the API key: pass the server's API_KEY as apiKey.`
      : `The LangShazam server needs an API key: pass its API_KEY as apiKey.`,
    busy: `The LangShazam server is busy${quoted}${details.retried ? "; it was tried twice" : ""}. Try again in a few seconds.`,
    too_big: `The audio went past the server's limits${quoted}: send less, or raise the server's limits (MAX_AUDIO_SECONDS, MAX_BYTES_PER_CONNECTION, MAX_UPLOAD_BYTES).`,
    bad_audio: `The server could not use the audio${quoted}. Send a format it decodes (webm, mp4, ogg, wav, mp3, flac).`,
    bad_request: `The server refused the request${quoted}: check the options (languages are ISO 639-1 codes such as en, es).`,
    engine: `The server's language engine failed${quoted}: try again; if it goes on, see the server's log.`,
  };
  return new LangShazamError(code, messages[code], details);
}

// Close codes (and the error message before them) as error codes: docs/protocol.md, "Messages from the server".
function closeError(closeCode, said, context) {
  const details = { serverMessage: said, closeCode, apiKey: context.apiKey, retried: context.retried };
  const text = said || "";
  if (closeCode === CLOSE.tryAgain || closeCode === CLOSE.goingAway) return refused("busy", said, details);
  if (closeCode === CLOSE.policy && /origin/i.test(text)) return refused("origin", said, details);
  if (closeCode === CLOSE.policy && /api key/i.test(text)) return refused("key", said, details);
  if (closeCode === CLOSE.tooBig) return refused("too_big", said, details);
  if (closeCode === CLOSE.unsupported) return refused(/decod|audio/i.test(text) ? "bad_audio" : "bad_request", said, details);
  if (closeCode === CLOSE.internal) return refused("engine", said, details);
  if (!context.opened) {
    return new LangShazamError("network", `Cannot reach the LangShazam server at ${context.url.split("?")[0]}: is it running (and ready), and is the address right?`, details);
  }
  return new LangShazamError("network", `The connection to the LangShazam server ended before its answer (close code ${closeCode}${said ? `: ${said}` : ""}). Try again.`, details);
}

function httpError(status, said, context) {
  const details = { serverMessage: said, status, apiKey: context.apiKey };
  if (status === 401) return refused("key", said, details);
  if (status === 413) return refused("too_big", said, details);
  if (status === 503) return refused("busy", said, details);
  if (status === 502) return refused("engine", said, details);
  if (status === 400 && /decod|audio/i.test(said || "")) return refused("bad_audio", said, details);
  if (status === 400 || status === 422) return refused("bad_request", said, details);
  return new LangShazamError("network", `The LangShazam server answered HTTP ${status}${said ? `: ${said}` : ""}.`, details);
}

function microphoneError(error) {
  const name = error && error.name;
  const message =
    name === "NotAllowedError" || name === "SecurityError"
      ? "Microphone access was refused. Allow the microphone for this site in the browser's settings, then try again."
      : name === "NotFoundError" || name === "OverconstrainedError"
        ? "No microphone found. Connect one and try again."
        : name === "NotReadableError"
          ? "The microphone could not be opened; another app may be using it."
          : `Could not open the microphone: ${(error && error.message) || error}`;
  return new LangShazamError("microphone", message, { cause: error });
}

const aborted = (signal) => signal.reason ?? new DOMException("The operation was aborted.", "AbortError");

// --- the level meter ----------------------------------------------------------------------------------

// onLevel(0..1), the loudness of the microphone (-60..0 dBFS), about 60 times a second.
function levelMeter(onLevel) {
  const AudioContext = globalThis.AudioContext || globalThis.webkitAudioContext;
  if (!onLevel || !AudioContext) return { attach() {}, stop() {} };
  const context = new AudioContext(); // made while the page still handles the click, so it may run
  let frame = 0;
  const next = (tick) => (globalThis.requestAnimationFrame ? requestAnimationFrame(tick) : setTimeout(tick, 16));
  const cancel = (id) => (globalThis.cancelAnimationFrame ? cancelAnimationFrame(id) : clearTimeout(id));
  return {
    attach(stream) {
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      context.createMediaStreamSource(stream).connect(analyser);
      context.resume().catch(() => {});
      const samples = new Float32Array(analyser.fftSize);
      const tick = () => {
        analyser.getFloatTimeDomainData(samples);
        const rms = Math.sqrt(samples.reduce((sum, value) => sum + value * value, 0) / samples.length);
        onLevel(Math.max(0, Math.min(1, (20 * Math.log10(rms + 1e-9) + 60) / 60)));
        frame = next(tick);
      };
      tick();
    },
    stop() {
      cancel(frame);
      context.close().catch(() => {});
      onLevel(0);
    },
  };
}

// --- listen -------------------------------------------------------------------------------------------

/**
 * Listen to the microphone (or `options.stream`) and identify the language spoken.
 * Resolves once audio is on its way, to a session: `result` (the final answer's data, or continuous
 * mode's summary) and `stop()` (ask for it now). Rejects with a LangShazamError (or the signal's reason).
 * @param {import("./langshazam").ListenOptions} options
 * @returns {Promise<import("./langshazam").Session>}
 */
export async function listen(options) {
  const { apiKey, mode = "stream", signal } = options || {};
  const url = withQuery(serverUrl(options && options.url, "/ws", "ws"), { mode, token: apiKey || undefined, ...serverOptions(options) });
  signal?.throwIfAborted();
  let audio;
  try {
    audio = await openAudio(options);
  } catch (error) {
    if (error instanceof LangShazamError) options.onError?.(error);
    throw error;
  }
  if (signal?.aborted) {
    audio.release();
    throw aborted(signal);
  }
  return new Listening(url, audio.stream, { ...options, mode, apiKey }, audio.release).started;
}

// The microphone (or the stream given), with the level meter on it; release() lets go of both.
async function openAudio({ stream: given, onLevel }) {
  if (!globalThis.MediaRecorder || (!given && !globalThis.navigator?.mediaDevices?.getUserMedia)) {
    throw new LangShazamError("microphone", "This browser cannot record audio here: use a current browser, on https or localhost.");
  }
  const meter = levelMeter(onLevel);
  let stream = given;
  if (!stream) {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      meter.stop();
      throw microphoneError(error);
    }
  }
  meter.attach(stream);
  const release = () => {
    meter.stop();
    if (!given) stream.getTracks().forEach((track) => track.stop());
  };
  return { stream, release };
}

// One listening session: a WebSocket and its recorder; after a close with 1013, one more of each.
class Listening {
  constructor(url, stream, options, release) {
    this.url = url;
    this.stream = stream;
    this.options = options;
    this.release = release;
    this.mimeType = recorderType();
    this.done = false;
    this.retried = false;
    this.stopping = false;
    this.conn = null;
    this.retryTimer = 0;
    this.started = new Promise((resolve, reject) => (this.startedCallbacks = { resolve, reject }));
    this.resultPromise = new Promise((resolve, reject) => (this.resultCallbacks = { resolve, reject }));
    this.resultPromise.catch(() => {}); // a caller with onError only need not await result
    this.session = {
      mimeType: this.mimeType,
      result: this.resultPromise,
      stop: () => this.stop(),
    };
    const { signal } = options;
    if (signal) {
      this.onAbort = () => this.end(aborted(signal));
      signal.addEventListener("abort", this.onAbort, { once: true });
    }
    this.connect();
  }

  connect() {
    const conn = { opened: false, said: "", ws: null, recorder: null };
    this.conn = conn;
    try {
      conn.ws = new WebSocket(this.url);
    } catch (error) {
      return this.end(new LangShazamError("network", `Bad LangShazam server address ${this.url.split("?")[0]}: ${error.message}`, { cause: error }));
    }
    conn.ws.onopen = () => {
      conn.opened = true;
      this.record(conn);
    };
    conn.ws.onmessage = (event) => this.receive(conn, event.data);
    conn.ws.onclose = (event) => this.closed(conn, event.code);
  }

  record(conn) {
    const recorder = new MediaRecorder(this.stream, this.mimeType ? { mimeType: this.mimeType } : undefined);
    conn.recorder = recorder;
    recorder.ondataavailable = (event) => {
      if (this.done || this.conn !== conn) return;
      if (event.data.size && conn.ws.readyState === WebSocket.OPEN) conn.ws.send(event.data);
      this.startedCallbacks.resolve(this.session); // listening: audio is on its way
    };
    // recorder.stop() hands over its last chunk, then fires stop: only then ask for the answer.
    recorder.onstop = () => {
      if (!this.done && this.stopping && this.conn === conn && conn.ws.readyState === WebSocket.OPEN) {
        conn.ws.send(JSON.stringify({ type: "stop" }));
      }
    };
    recorder.start(CHUNK_MS);
  }

  receive(conn, text) {
    if (this.done || this.conn !== conn) return;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const { onPartial, onSegment } = this.options;
    if (message.status === "partial") onPartial?.(message.data);
    else if (message.status === "segment") onSegment?.(message.data);
    else if (message.status === "success") this.end(null, message.data);
    else if (message.status === "error") {
      conn.said = message.message; // the close code follows
      conn.retryAfter = message.retry_after; // seconds, when the server is full
    }
  }

  closed(conn, code) {
    if (this.done || this.conn !== conn) return;
    if (code === CLOSE.tryAgain && !this.retried && !this.stopping) {
      this.retried = true;
      stopRecorder(conn);
      // The server's hint when it sent one (a full replica), at most MAX_RETRY_DELAY_MS.
      const delay = conn.retryAfter > 0 ? Math.min(1000 * conn.retryAfter, MAX_RETRY_DELAY_MS) : RETRY_DELAY_MS;
      this.retryTimer = setTimeout(() => this.done || this.connect(), delay);
      return;
    }
    this.end(closeError(code, conn.said, { opened: conn.opened, url: this.url, apiKey: this.options.apiKey, retried: this.retried }));
  }

  stop() {
    if (!this.done && !this.stopping) {
      this.stopping = true;
      const { recorder } = this.conn;
      if (recorder && recorder.state !== "inactive") recorder.stop(); // its onstop sends {"type": "stop"}
      else this.end(closeError(CLOSE.tryAgain, this.conn.said, { apiKey: this.options.apiKey, retried: true }));
      if (!this.options.stream) this.stream.getTracks().forEach((track) => track.stop()); // the mic light goes off
    }
    return this.resultPromise;
  }

  // The session is over: with the answer's data, or with an error.
  end(error, data) {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.retryTimer);
    this.options.signal?.removeEventListener("abort", this.onAbort);
    stopRecorder(this.conn);
    const ws = this.conn && this.conn.ws;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    this.release();
    if (error) {
      this.startedCallbacks.reject(error);
      this.resultCallbacks.reject(error);
      if (!(error instanceof DOMException)) this.options.onError?.(error);
    } else {
      this.startedCallbacks.resolve(this.session);
      this.resultCallbacks.resolve(data);
      this.options.onResult?.(data);
    }
  }
}

function stopRecorder(conn) {
  if (conn && conn.recorder && conn.recorder.state !== "inactive") conn.recorder.stop();
}

// --- detectFile ---------------------------------------------------------------------------------------

/**
 * The language of a recording (a Blob or File): POST /detect. A busy server (503) gets one more try.
 * @param {string} url the server's address (or its /detect)
 * @param {Blob} file
 * @param {import("./langshazam").DetectOptions} [options]
 * @returns {Promise<import("./langshazam").Answer>}
 */
export async function detectFile(url, file, options = {}) {
  const address = serverUrl(url, "/detect", "http").href;
  const body = () => {
    const form = new FormData();
    form.append("file", file, file.name || "audio");
    const fields = { ...serverOptions(options), timeline: options.timeline };
    for (const [name, value] of Object.entries(fields)) if (value !== undefined && value !== null) form.append(name, String(value));
    return form;
  };
  const headers = options.apiKey ? { Authorization: `Bearer ${options.apiKey}` } : {};
  for (let attempt = 0; ; attempt++) {
    let response;
    try {
      response = await fetch(address, { method: "POST", body: body(), headers, signal: options.signal });
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      throw new LangShazamError(
        "network",
        `Cannot reach the LangShazam server at ${address}, or it does not accept pages from ${pageOrigin()} (then add that origin to its CORS_ORIGINS).`,
        { cause: error },
      );
    }
    const answer = await response.json().catch(() => ({}));
    if (response.ok && answer.status === "success") return answer.data;
    if (response.status === 503 && attempt === 0) {
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
      continue;
    }
    throw httpError(response.status, answer.message, { apiKey: options.apiKey });
  }
}
