// Types of langshazam.js, LangShazam's browser client. The answer objects are the server's `data`, as
// docs/protocol.md ("Messages from the server") describes them; fields a server may not send are optional.

/** What a LangShazamError is about. */
export type ErrorCode =
  | "origin" // the page's origin is not in the server's CORS_ORIGINS
  | "key" // missing or wrong API key (the server's API_KEY)
  | "too_big" // past the server's limits (frame, bytes, seconds of audio, upload size)
  | "bad_audio" // audio the server cannot decode
  | "bad_request" // an option the server refuses (an unknown language code, top_k out of range, ...)
  | "busy" // MAX_CONNECTIONS open, the inference queue full, or shutting down: tried twice
  | "engine" // the server's engine failed
  | "network" // the server cannot be reached, or the connection ended before the answer
  | "microphone"; // refused, missing or busy microphone; a browser that cannot record

export const ERROR_CODES: readonly ErrorCode[];

export class LangShazamError extends Error {
  constructor(code: ErrorCode, message: string, details?: { serverMessage?: string; closeCode?: number; status?: number; cause?: unknown });
  name: "LangShazamError";
  readonly code: ErrorCode;
  /** The server's own message, when it sent one. */
  readonly serverMessage?: string;
  /** The WebSocket close code (listen). */
  readonly closeCode?: number;
  /** The HTTP status (detectFile). */
  readonly status?: number;
}

export interface Candidate {
  language: string;
  language_name: string;
  probability: number | null;
}

export type Reason = "no_speech" | "too_short" | "uncertain";
export type EndedBy =
  | "confident" | "end_of_speech" | "no_speech" | "stop" | "max_duration" | "shutdown" | "quiet" | "idle" | "max_bytes";

/** What every answer and timeline segment says about the language: the honesty rule's verdict. */
export interface Verdict {
  /** ISO 639-1 code, or null with a `reason`. */
  language: string | null;
  language_name: string | null;
  /** The calibrated probability of `language`; null without a language or when the engine gives none. */
  confidence: number | null;
  /** The honesty rule's verdict: say it as a fact only when true. */
  confident: boolean;
  /** The most likely candidates, most likely first. */
  top: Candidate[];
  /** Only when `language` is null. */
  reason?: Reason;
  /** The fewest languages that together hold the spoken one (most likely first), where the server sends it. */
  likely?: string[];
}

/** One answer: partial, final, a continuous-mode segment, or POST /detect's. */
export interface Answer extends Verdict {
  /** Stream finals (and segments): why the stream ended. */
  ended_by?: EndedBy;
  /** True when `language` is the requested fallbackLanguage, named because the answer was uncertain. */
  fallback?: boolean;
  final: boolean;
  speech_duration?: number;
  audio_duration: number;
  processing_time?: number;
  engine?: string;
  /** The candidate languages, when given. */
  candidates?: string[];
  /** POST /detect: the file lasted more than MAX_UPLOAD_SECONDS; the answer rests on its beginning. */
  truncated?: boolean;
  /** POST /detect with `timeline: true`. */
  timeline?: TimelineSegment[];
  /** Continuous mode's segments and partials: seconds of speech in the stream. */
  start?: number;
  end?: number;
  /** Continuous mode's segments: their number, from 0. */
  index?: number;
  connection_id: string;
}

export interface TimelineSegment extends Verdict {
  start: number;
  end: number;
}

/** Continuous mode's final answer: every segment, and how long each language was spoken. */
export interface Summary {
  mode: "continuous";
  final: true;
  ended_by: EndedBy;
  /** The language spoken longest, or null with a `reason`. */
  language: string | null;
  language_name: string | null;
  confidence: null;
  confident: false;
  languages: { language: string; language_name: string; seconds: number }[];
  segments: Pick<Answer, "index" | "start" | "end" | "language" | "language_name" | "confidence" | "confident" | "reason" | "likely">[];
  reason?: Reason;
  audio_duration: number;
  candidates?: string[];
  connection_id: string;
}

/** The query options both calls share. */
export interface RequestOptions {
  /** The server's API_KEY, when it has one (listen sends it as ?token=, detectFile as a Bearer header). */
  apiKey?: string;
  /** Candidate languages (ISO 639-1): probabilities are renormalised over them. */
  languages?: string[] | string;
  /** How many candidates `top` lists (1-100). */
  topK?: number;
  /** This request's confident threshold (0-1), for servers that accept it. */
  minConfidence?: number;
  /** A language to name, not confidently, when the answer would be uncertain (servers that accept it). */
  fallbackLanguage?: string;
}

export type Mode = "stream" | "continuous" | "once";

export interface ListenOptions<M extends Mode = Mode> extends RequestOptions {
  /** The server: http(s)://host:port (its /ws is used) or a ws(s):// address. */
  url: string;
  /** "stream" (default): partials, then one final answer; "continuous": segments until stop(); "once". */
  mode?: M;
  /** Audio to send instead of the microphone (it is not stopped at the end). */
  stream?: MediaStream;
  onPartial?: (data: Answer) => void;
  onResult?: (data: M extends "continuous" ? Summary : Answer) => void;
  onSegment?: (data: Answer) => void;
  /** The microphone's loudness, 0..1, about 60 times a second; 0 at the end. */
  onLevel?: (level: number) => void;
  /** Any error that ends the session (also the one listen() or result rejects with). */
  onError?: (error: LangShazamError) => void;
  /** Aborting releases everything; listen() or result reject with the signal's reason. */
  signal?: AbortSignal;
}

export interface Session<M extends Mode = Mode> {
  /** The final answer's data (continuous mode: the summary). */
  readonly result: Promise<M extends "continuous" ? Summary : Answer>;
  /** Ask for the answer now (continuous mode: the summary); resolves as `result`. */
  stop(): Promise<M extends "continuous" ? Summary : Answer>;
  /** The recorder type used ("" for the browser's default). */
  readonly mimeType: string;
}

export function listen<M extends Mode = "stream">(options: ListenOptions<M>): Promise<Session<M>>;

export interface DetectOptions extends RequestOptions {
  /** Also answer the language timeline: which language when. */
  timeline?: boolean;
  signal?: AbortSignal;
}

/** POST /detect: the language of a recording. */
export function detectFile(url: string, file: Blob, options?: DetectOptions): Promise<Answer>;

/** Recorder types in order of preference. */
export const RECORDER_TYPES: readonly string[];
/** The first of RECORDER_TYPES this browser records ("" when none). */
export function recorderType(): string;
