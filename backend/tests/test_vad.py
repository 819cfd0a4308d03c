"""The VAD over a growing stream (vad.VadStream): the same speech as the whole-clip VAD at every step, for
work in proportion to the new audio only."""

from __future__ import annotations

import numpy as np

from audio_tools import clip, join_clips
from src.audio import decode
from src.vad import VoiceActivityDetector

STEP = 4000  # 250 ms at 16 kHz, a real-time client's chunk


class CountingSession:
    """Silero's ONNX session, counting the frames it is asked to compute."""

    def __init__(self, session) -> None:
        self.session, self.frames = session, 0

    def run(self, outputs, feeds):
        self.frames += feeds["input"].shape[0]
        return self.session.run(outputs, feeds)


def test_stream_finds_what_the_whole_clip_vad_finds_at_every_step():
    samples, _ = join_clips([("es_cv_5.mp3", "es"), ("de_cv_5.mp3", "de")], 1.2)
    vad = VoiceActivityDetector()
    stream = vad.stream()
    steps = 0
    for end in range(STEP, len(samples) + STEP, STEP):
        end = min(end, len(samples))
        stream.follow(samples[:end], 0)
        for min_silence in (None, 250):
            assert stream.speech(0, min_silence) == vad.find_speech(samples[:end], min_silence), end
        steps += 1
    assert steps > 30 and len(stream.speech(0).segments) >= 2  # a real test: speech, pauses, two clips


def test_each_step_runs_the_model_over_the_new_samples_only():
    samples = decode(clip("fr_cv_3.mp3").path.read_bytes())
    long = np.concatenate([samples] * 12)  # about a minute
    stream = VoiceActivityDetector().stream()
    counter = CountingSession(stream._session)
    stream._session = counter
    per_step = []
    for end in range(STEP, len(long) + 1, STEP):
        before = counter.frames
        stream.follow(long[:end], 0)
        stream.speech(0)
        per_step.append(counter.frames - before)
    # 4000 new samples are 7 or 8 whole frames of 512, plus the incomplete last frame computed anew.
    assert len(per_step) > 200 and max(per_step) <= 9, max(per_step)
    assert per_step[-1] <= per_step[0] + 1


def test_released_frames_are_forgotten_and_offsets_are_relative():
    samples = decode(clip("de_cv_5.mp3").path.read_bytes())
    stream = VoiceActivityDetector().stream()
    stream.follow(samples, 0)
    whole = stream.speech(0)
    first = whole.segments[0][0]
    stream.release(first)
    assert stream._first == first // 512 and stream._probs.size == -(-len(samples) // 512) - first // 512 - (
        1 if len(samples) % 512 else 0)
    shifted = stream.speech(first)
    assert shifted.segments and shifted.segments[-1][1] == whole.segments[-1][1] - first
    # Later audio is taken from a buffer that starts after the released part, as AudioStream hands it.
    stream.follow(np.concatenate([samples, samples])[first:], first)
    assert stream.samples == 2 * len(samples)
