"""Stand-ins for the model in the measure-side hardening tests: a fake encoder with
MemoEncoder's interface, an encoder that fails if it is ever built, a toy reference and
small generated inputs. Nothing here loads a model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from measure.profile_reference import REFERENCE_FILE, Reference

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "profiles"
CONFIG = ('model = "me5-small"\nmethod = "probe"\n[budget]\nper_language = 10\n'
          '[[targets]]\nsplit = "xnli/test"\nlanguages = ["en"]\n'
          '[[sources]]\npool = "xnli/validation"\nsingles = true\nlanguages = ["en"]\n')


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- a fake encoder and a toy reference: no model is loaded --------------------------------
class _FakeTokenizer:
    unk_token_id = 0

    def tokenize(self, line: str) -> list[str]:
        return ["\u2581" + w for w in line.split()]

    def convert_tokens_to_ids(self, pieces: list[str]) -> list[int]:
        return [1 + len(p) for p in pieces]


class FakeEncoder:
    """Stands in for MemoEncoder (same constructor): deterministic 4-d unit vectors."""
    fingerprint = "fp"
    tokenizer = _FakeTokenizer()

    def __init__(self, model: str = "me5-small", backend: str = "ort-int8-s8") -> None:
        self.model, self.backend = model, backend

    def encode(self, texts, desc: str = "") -> np.ndarray:
        rows = [np.array([sum(map(ord, t)) % 7, len(t) % 5, t.count("a") + 1, 1.0], float)
                for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows])


class ExplodingEncoder:
    """Fails the test if any check lets the work start."""

    def __init__(self, *a, **k) -> None:
        raise AssertionError("the encoder was loaded before the inputs and output were checked")


def toy_reference(profiles: Path) -> None:
    rng = np.random.default_rng(0)
    ref = Reference(["en", "sw"], rng.normal(size=(2, 4)), rng.normal(size=(3, 16)),
                    np.zeros(3), 0.5, 0.6, 0.7, {"model_fingerprint": "fp"})
    ref.save(profiles / "me5-small" / REFERENCE_FILE)


WORDS = "the a cat dog house river walks sleeps under over red blue old new".split()


def inputs(tmp_path: Path, n: int = 30, related: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    text = write(tmp_path / "t.txt", "".join(f"{' '.join(rng.choice(WORDS, 6))} {i}\n"
                                              for i in range(n)))
    prem = [f"{' '.join(rng.choice(WORDS, 7))} number{i} item{i}x" for i in range(n)]
    hyp = [f"{p.split()[-1]} {p.split()[-2]} {rng.choice(WORDS)}" for p in prem]
    if not related:
        hyp = hyp[7:] + hyp[:7]
    pairs = write(tmp_path / "p.tsv", "".join(f"{p}\t{h}\n" for p, h in zip(prem, hyp)))
    return text, pairs
