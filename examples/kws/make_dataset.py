"""Synthesise a 12-class keyword-spotting data set with espeak-ng and extract 49x10 MFCCs.

Classes (Speech Commands v0.01 layout): yes, no, up, down, left, right, on, off, stop, go,
unknown (other words), silence (background noise only).

Every utterance is one word spoken by espeak-ng with a random accent (the espeak-ng English
voices), voice variant (+m1, +f3, +klatt2, +whisper, ... from ``espeak-ng --voices=variant``),
speed (-s 120..200 words/min) and pitch (-p 20..80), resampled from 22050 Hz to 16 kHz, trimmed
of its leading and trailing silence, shifted to a random place inside a 1 s window, scaled to a
random level and mixed with white or pink noise at a random SNR. "silence" is noise alone.

Honest splits: the voice *variants* are partitioned once (seeded) into a training set and a
held-out set. ``train`` and ``val`` use only the training variants, ``test`` and ``calib`` only
the held-out ones, so the test accuracy measures generalisation to unseen voices. ``test`` also
draws a third of its "unknown" utterances from words never used in training.

Features (numpy only, vectorised): 40 ms Hamming windows (640 samples) every 20 ms (320
samples) -> 49 frames; 1024-point FFT power spectrum; 40 triangular mel filters 20..4000 Hz;
natural log; orthonormal DCT-II, first 10 coefficients. Values are rounded to float16 precision
(and stored as float32) so that the committed files compress well.

Output in --out DIR:
    train.npz  x float32 [N, 1, 49, 10], y int64 [N]   (not committed: regenerate)
    val.npz    same layout, training variants, other seed (not committed)
    test.npz   same layout, held-out variants
    calib.npz  mfcc float32 [64, 1, 49, 10] (held-out variants; the compiler's calibration set)
    labels.txt one class name per line, in label order
    meta.json  the split parameters and the variant partition

Usage (about 2 minutes for the default sizes on 2 cores):
    python examples/kws/make_dataset.py --out /tmp/kws_data
    python examples/kws/make_dataset.py --out examples/kws --splits test,calib   # committed files
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

LABELS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "unknown", "silence"]
KEYWORDS = LABELS[:10]
UNKNOWN_TRAIN = [
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "learn", "follow", "forward", "backward", "visual", "yellow", "north", "apple", "water", "light",
]
UNKNOWN_HELD_OUT = ["window", "green", "open", "seat", "tiger", "under"]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc"]

SR = 16000
ESPEAK_SR = 22050
WIN, HOP, NFFT, NMEL, NMFCC = 640, 320, 1024, 40, 10
FRAMES = 1 + (SR - WIN) // HOP  # 49
DEFAULT_SIZES = {"train": 19200, "val": 1200, "test": 1200, "calib": 64}
SPLIT_SEED = {"train": 1, "val": 2, "test": 3, "calib": 4}


# ---------------------------------------------------------------- features

def _mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_inv(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mel=NMEL, n_fft=NFFT, sr=SR, fmin=20.0, fmax=4000.0) -> np.ndarray:
    """[n_fft//2+1, n_mel] triangular filters on the mel scale (HTK formula)."""
    edges = _mel_inv(np.linspace(_mel(fmin), _mel(fmax), n_mel + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T


def dct_matrix(n_in=NMEL, n_out=NMFCC) -> np.ndarray:
    """[n_in, n_out] orthonormal DCT-II."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None]
    d = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    d[:, 0] /= np.sqrt(2.0)
    return d


_FBANK = mel_filterbank()
_DCT = dct_matrix()
_HAMMING = np.hamming(WIN)


def mfcc(audio: np.ndarray) -> np.ndarray:
    """audio [..., 16000] float in [-1, 1] -> MFCC [..., 49, 10] float32 (float16 precision)."""
    idx = np.arange(FRAMES)[:, None] * HOP + np.arange(WIN)[None]
    frames = audio[..., idx] * _HAMMING                      # [..., 49, 640]
    power = np.abs(np.fft.rfft(frames, n=NFFT, axis=-1)) ** 2  # [..., 49, 513]
    logmel = np.log(power @ _FBANK + 1e-6)                   # [..., 49, 40]
    return (logmel @ _DCT).astype(np.float16).astype(np.float32)


# ---------------------------------------------------------------- audio

def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited FFT resampling (the spectrum is truncated at the new Nyquist)."""
    n_out = int(round(len(x) * sr_out / sr_in))
    spec = np.fft.rfft(x)
    keep = n_out // 2 + 1
    return np.fft.irfft(spec[:keep], n=n_out) * (n_out / len(x))


def espeak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One word from espeak-ng as float audio at 16 kHz, leading/trailing silence trimmed."""
    raw = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                         capture_output=True, check=True).stdout
    # espeak-ng streams its WAV with placeholder chunk sizes: find the data chunk ourselves.
    sr = int.from_bytes(raw[24:28], "little")
    data = raw.index(b"data") + 8
    x = np.frombuffer(raw[data:data + (len(raw) - data) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0
    if sr != SR:
        x = resample(x, sr, SR)
    env = np.convolve(np.abs(x), np.ones(160) / 160, mode="same")
    on = np.flatnonzero(env > 0.02 * env.max())
    if len(on) == 0:
        raise RuntimeError(f"espeak-ng produced no sound for {word!r} with {voice}")
    return x[max(0, on[0] - 160):on[-1] + 160]


def noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    w = rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(w)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        w = np.fft.irfft(spec / np.sqrt(f), n=n)
    return w / np.sqrt(np.mean(w ** 2))


def make_one(job: dict) -> tuple[np.ndarray, int]:
    """One utterance (described by a job drawn in the parent) -> (MFCC [49, 10], label)."""
    rng = np.random.default_rng(job["seed"])
    out = np.zeros(SR)
    if job["word"] is not None:
        speech = espeak(job["word"], job["voice"], job["speed"], job["pitch"])
        if len(speech) > SR:                      # very slow speech: keep the middle second
            start = (len(speech) - SR) // 2
            speech = speech[start:start + SR]
        offset = rng.integers(0, SR - len(speech) + 1)
        speech = speech / np.abs(speech).max() * 10 ** (job["level_db"] / 20)
        out[offset:offset + len(speech)] = speech
        active = np.sqrt(np.mean(speech ** 2))
        noise_rms = active * 10 ** (-job["snr_db"] / 20)
    else:
        noise_rms = 10 ** (job["noise_db"] / 20)
    bg = noise(rng, SR, job["noise"]) * noise_rms
    if job["word"] is None and job["modulate"]:   # silence: slowly varying background
        bg *= 1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.3, 3.0) * np.arange(SR) / SR + rng.uniform(0, 6.3))
    out = np.clip(out + bg, -1.0, 1.0)
    return mfcc(out), job["label"]


# ---------------------------------------------------------------- splits

def variants() -> list[str]:
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[4].startswith("!v/"):
            names.append(parts[4][3:])
    return sorted(n for n in names if " " not in n)


def variant_partition(seed: int, held_out_fraction: float = 0.25) -> tuple[list[str], list[str]]:
    names = variants()
    if not names:
        sys.exit("espeak-ng lists no voice variants; install espeak-ng (apt-get install espeak-ng)")
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = max(1, int(round(len(names) * held_out_fraction)))
    test = sorted(names[i] for i in order[:n_test])
    train = sorted(names[i] for i in order[n_test:])
    return train, test


def jobs_for(split: str, count: int, seed: int, train_var: list[str], test_var: list[str]) -> list[dict]:
    rng = np.random.default_rng([seed, SPLIT_SEED[split]])
    held_out = split in ("test", "calib")
    var = test_var if held_out else train_var
    labels = np.arange(count) % len(LABELS)       # balanced classes
    rng.shuffle(labels)
    jobs = []
    for i, label in enumerate(labels):
        job = {"label": int(label), "seed": [seed, SPLIT_SEED[split], i], "word": None,
               "noise": str(rng.choice(["white", "pink"]))}
        if LABELS[label] == "silence":
            job.update(noise_db=float(rng.uniform(-70, -20)), modulate=bool(rng.random() < 0.5))
        else:
            if LABELS[label] == "unknown":
                pool = UNKNOWN_TRAIN + UNKNOWN_HELD_OUT * 3 if split == "test" else UNKNOWN_TRAIN
                word = str(rng.choice(pool))
            else:
                word = LABELS[label]
            job.update(word=word, voice=f"{rng.choice(ACCENTS)}+{rng.choice(var)}",
                       speed=int(rng.integers(120, 201)), pitch=int(rng.integers(20, 81)),
                       level_db=float(rng.uniform(-25, -1)),
                       snr_db=float(40.0 if rng.random() < 0.1 else rng.uniform(5, 30)))
        jobs.append(job)
    return jobs


def generate(split: str, count: int, seed: int, train_var, test_var, workers: int) -> tuple[np.ndarray, np.ndarray]:
    jobs = jobs_for(split, count, seed, train_var, test_var)
    x = np.empty((count, 1, FRAMES, NMFCC), np.float32)
    y = np.empty(count, np.int64)
    t0 = time.time()
    with Pool(workers) as pool:
        for i, (feat, label) in enumerate(pool.imap(make_one, jobs, chunksize=32)):
            x[i, 0], y[i] = feat, label
            if (i + 1) % 1000 == 0 or i + 1 == count:
                rate = (i + 1) / (time.time() - t0)
                print(f"  {split}: {i + 1}/{count}  ({rate:.0f} utt/s, {(count - i - 1) / rate:.0f} s left)",
                      file=sys.stderr, flush=True)
    return x, y


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--splits", default="train,val,test,calib")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    for name, size in DEFAULT_SIZES.items():
        ap.add_argument(f"--{name}-size", type=int, default=size)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    train_var, test_var = variant_partition(args.seed)
    print(f"{len(train_var)} training variants, {len(test_var)} held-out variants: {' '.join(test_var)}",
          file=sys.stderr)
    t_all = time.time()
    for split in args.splits.split(","):
        count = getattr(args, f"{split}_size")
        x, y = generate(split, count, args.seed, train_var, test_var, args.workers)
        if split == "calib":
            np.savez_compressed(args.out / "calib.npz", mfcc=x)
        else:
            np.savez_compressed(args.out / f"{split}.npz", x=x, y=y)
    (args.out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    meta = {"seed": args.seed, "labels": LABELS, "accents": ACCENTS, "train_variants": train_var,
            "held_out_variants": test_var, "unknown_train": UNKNOWN_TRAIN, "unknown_held_out": UNKNOWN_HELD_OUT,
            "sizes": {s: getattr(args, f"{s}_size") for s in args.splits.split(",")},
            "mfcc": {"sr": SR, "win": WIN, "hop": HOP, "nfft": NFFT, "n_mel": NMEL, "fmin": 20, "fmax": 4000,
                     "n_mfcc": NMFCC, "window": "hamming", "log": "ln(mel_power + 1e-6)", "dct": "DCT-II ortho"}}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"done in {time.time() - t_all:.0f} s -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
