// useLangShazam: LangShazam's client library as a React hook.
//
//   const { state, partial, answer, error, level, start, stop } = useLangShazam({ url: "http://localhost:10000" });
//
// `state`: "idle", "starting", "listening", "stopping", "done" or "error". `partial` is the latest partial
// answer while listening, `answer` the final one (continuous mode: the summary), `error` a
// LangShazamError (its `code` says what went wrong, its message what to do), `level` the microphone's
// loudness (0..1). Leaving the page (unmounting) releases the microphone.

import { useCallback, useEffect, useRef, useState } from "react";
import { listen } from "langshazam";

/** @typedef {import("langshazam").Answer} Answer */
/** @typedef {import("langshazam").Summary} Summary */
/** @typedef {import("langshazam").LangShazamError} LangShazamError */
/** @typedef {"idle" | "starting" | "listening" | "stopping" | "done" | "error"} ListenState */

/**
 * @param {Omit<import("langshazam").ListenOptions, "signal" | "onPartial" | "onLevel" | "onResult" | "onError">} options
 * @returns {{ state: ListenState, partial: Answer | null, answer: Answer | Summary | null,
 *   error: LangShazamError | null, level: number, start: () => Promise<void>, stop: () => void }}
 */
export function useLangShazam(options) {
  const [state, setState] = useState(/** @type {ListenState} */ ("idle"));
  const [partial, setPartial] = useState(/** @type {Answer | null} */ (null));
  const [answer, setAnswer] = useState(/** @type {Answer | Summary | null} */ (null));
  const [error, setError] = useState(/** @type {LangShazamError | null} */ (null));
  const [level, setLevel] = useState(0);
  const latest = useRef(options);
  latest.current = options;
  const run = useRef(/** @type {{ controller: AbortController, session?: import("langshazam").Session } | null} */ (null));

  useEffect(() => () => run.current?.controller.abort(), []);

  const start = useCallback(async () => {
    run.current?.controller.abort();
    /** @type {{ controller: AbortController, session?: import("langshazam").Session }} */
    const current = { controller: new AbortController() };
    run.current = current;
    setState("starting");
    setPartial(null);
    setAnswer(null);
    setError(null);
    try {
      const session = await listen({ ...latest.current, signal: current.controller.signal, onPartial: setPartial, onLevel: setLevel });
      current.session = session;
      setState("listening");
      const data = await session.result;
      if (run.current !== current) return;
      setAnswer(data);
      setState("done");
    } catch (caught) {
      if (run.current !== current) return;
      if (current.controller.signal.aborted) return setState("idle");
      setError(/** @type {LangShazamError} */ (caught));
      setState("error");
    }
  }, []);

  const stop = useCallback(() => {
    const current = run.current;
    if (!current) return;
    if (!current.session) return current.controller.abort(); // not listening yet: cancel
    setState("stopping");
    current.session.stop();
  }, []);

  return { state, partial, answer, error, level, start, stop };
}
