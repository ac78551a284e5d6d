"""How the guard scores a text with the learned injection detector, exactly as
`traps/src/classifier` does (the fixtures the training script writes pin the two
together).

A text is normalized once (each character NFKC on its own, ASCII letters lowercased,
whitespace runs collapsed to one space) and hashed once into feature occurrences:
character 3-5-grams of the text padded with a space at each end, words, and pairs of
adjacent words. A window of the normalized text holds the character n-grams that lie
inside it and the character on either side, and the words and pairs that lie wholly
inside it, so a window of a whole text is the text as it would be scored alone.

The text's score is its strongest window's, over two kinds:

- fixed segments of SEGMENT characters every STRIDE characters (one for a short text),
  for long attacks;
- word-aligned windows of MIN_WINDOW to MAX_WINDOW characters that fit an instruction
  planted in longer text, so that it scores about as it does alone wherever it sits.
  Searching them all exactly costs too much; a word's contribution is approximated by
  the sum of its occurrences' weights (counts taken as one), the window with the best
  sum per square root of its occurrence count is found for each start word, and the
  CANDIDATES best of those are scored exactly. An optimal window starts and ends at a
  word whose contribution is positive (dropping a word that adds nothing raises the
  ratio), so only those are tried. The arithmetic of the search is integer sums and
  float32 ratios so that this script and the Rust code pick the same windows.
"""

import math
import unicodedata
import zlib

import numpy as np

DIM = 1 << 17
SEGMENT = 512
STRIDE = SEGMENT // 2
MIN_WINDOW = 40
MAX_WINDOW = 512
CANDIDATES = 4
MAX_COUNT = 255
WHITESPACE = " \t\n\r\x0b\x0c"
LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize(text):
    """Each character NFKC on its own, ASCII letters lowercased, whitespace runs
    collapsed to one space, trimmed."""
    out, space = [], False
    for raw in text:
        for c in unicodedata.normalize("NFKC", raw) if ord(raw) > 127 else raw:
            if c in WHITESPACE:
                space = True
                continue
            if space and out:
                out.append(" ")
            space = False
            out.append(c.translate(LOWER))
    return "".join(out)


def is_word_char(c):
    return c.isascii() and c.isalnum() or ord(c) > 127


def bucket(feature):
    return zlib.crc32(feature.encode("utf-8")) & (DIM - 1)


def segment_bounds(length):
    """(start, end) character ranges of the fixed segments of a text of `length`
    characters: one for a short text, else every STRIDE characters until one reaches
    the end."""
    if length <= SEGMENT:
        return [(0, length)]
    out, start = [], 0
    while True:
        end = min(start + SEGMENT, length)
        out.append((start, end))
        if end == length:
            return out
        start += STRIDE


def words_of(text):
    """(start, end) character ranges of the maximal runs of word characters."""
    out, start = [], None
    for i, c in enumerate(text):
        if is_word_char(c):
            if start is None:
                start = i
        elif start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(text)))
    return out


class Occurrences:
    """A normalized text's features: `grams[i, k]` is the bucket of the (k+3)-gram at
    position i of the padded text (-1 past its end), `words` the words' ranges,
    `word_buckets` and `pair_buckets` (pair k joins words k and k+1)."""

    def __init__(self, text):
        padded = " " + text + " "
        self.length = len(text)
        grams = [bucket("c" + padded[i : i + n]) if i + n <= len(padded) else -1 for i in range(len(padded)) for n in (3, 4, 5)]
        self.grams = np.array(grams, dtype=np.int64).reshape(len(padded), 3)
        self.words = words_of(text)
        self.word_buckets = np.array([bucket("w" + text[s:e]) for s, e in self.words], dtype=np.int64)
        self.pair_buckets = np.array(
            [bucket("b" + text[s:e] + " " + text[s2:e2]) for (s, e), (s2, e2) in zip(self.words, self.words[1:])], dtype=np.int64
        )
        self.starts = np.array([s for s, _ in self.words], dtype=np.int64)
        self.ends = np.array([e for _, e in self.words], dtype=np.int64)

    def window(self, a, b):
        """The buckets of window [a, b) of the normalized text, one per occurrence."""
        rows = self.grams[a : b]
        keep = np.ones(rows.shape, dtype=bool)
        # The n-gram at padded position i ends at i + n, at most b + 2.
        for offset in range(min(2, len(rows))):
            keep[len(rows) - 1 - offset, 1 + offset :] = False
        grams = rows[keep & (rows >= 0)]
        inside = (self.starts >= a) & (self.ends <= b)
        words = self.word_buckets[inside]
        pairs = self.pair_buckets[inside[:-1] & inside[1:]] if len(self.words) > 1 else self.pair_buckets[:0]
        return np.concatenate([grams, words, pairs])


class Scorer:
    """The guard's arithmetic with these int16 weights, scale and bias."""

    def __init__(self, weights, scale, bias):
        self.weights = np.asarray(weights, dtype=np.int64)
        self.scale = scale
        self.bias = bias

    def exact(self, occurrences, a, b):
        buckets, counts = np.unique(occurrences.window(a, b), return_counts=True)
        if len(buckets) == 0:
            return 1.0 / (1.0 + math.exp(-self.bias))
        values = np.log1p(np.minimum(counts, MAX_COUNT).astype(np.float64))
        dot = float(np.dot(self.weights[buckets].astype(np.float64), values))
        norm = float(np.dot(values, values))
        logit = self.bias + self.scale * dot / math.sqrt(norm)
        return 1.0 / (1.0 + math.exp(-logit))

    def candidates(self, occ):
        """The CANDIDATES word-aligned windows with the best approximate ratio."""
        m = len(occ.words)
        if m == 0 or occ.length <= MIN_WINDOW:
            return []
        # Unit k: the n-grams starting at padded positions from word k's start (the
        # space before it) to word k+1's, word k, and the pair of words k and k+1.
        bounds = [0] + [int(s) for s in occ.starts[1:]] + [occ.length + 2]
        gram_weight = np.where(occ.grams >= 0, self.weights[np.maximum(occ.grams, 0)], 0).sum(axis=1)
        gram_count = (occ.grams >= 0).sum(axis=1)
        gw = np.concatenate([[0], np.cumsum(gram_weight)])
        gc = np.concatenate([[0], np.cumsum(gram_count)])
        d = np.array([gw[bounds[k + 1]] - gw[bounds[k]] for k in range(m)], dtype=np.int64) + self.weights[occ.word_buckets]
        q = np.array([gc[bounds[k + 1]] - gc[bounds[k]] for k in range(m)], dtype=np.int64) + 1
        d[: m - 1] += self.weights[occ.pair_buckets]
        q[: m - 1] += 1
        cd = np.concatenate([[0], np.cumsum(d)])
        cq = np.concatenate([[0], np.cumsum(q)])
        positive = np.flatnonzero(d > 0)
        found = []
        for n, i in enumerate(positive):
            ends = positive[n:]
            length = occ.ends[ends] - occ.starts[i]
            ends = ends[(length >= MIN_WINDOW) & (length <= MAX_WINDOW)]
            if len(ends) == 0:
                continue
            total = (cd[ends + 1] - cd[i]).astype(np.float32)
            count = (cq[ends + 1] - cq[i]).astype(np.float32)
            ratio = total / np.sqrt(count)
            best = int(np.argmax(ratio))
            if ratio[best] > 0:
                found.append((float(ratio[best]), int(i), int(ends[best])))
        found.sort(key=lambda c: (-c[0], c[1]))
        return [(int(occ.starts[i]), int(occ.ends[j])) for _, i, j in found[:CANDIDATES]]

    def strongest(self, text):
        """The strongest window's score and the window's normalized text."""
        normalized = normalize(text)
        occ = Occurrences(normalized)
        windows = segment_bounds(len(normalized)) + self.candidates(occ)
        score, a, b = max((self.exact(occ, a, b), a, b) for a, b in windows)
        return score, normalized[a:b]

    def score(self, text):
        return self.strongest(text)[0]
