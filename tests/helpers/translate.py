"""Translation test helpers: tiny random-weight Argos packages, built for real (no registry
ships any .argosmodel), and the mark for tests that need Apertium's eng-spa pair.

The package is a genuine .argosmodel: a CTranslate2 Transformer (1 encoder + 1 decoder
layer, 2 heads, d_model 16) saved from numpy weights, a SentencePiece model trained on a
few lines, and metadata.json, zipped under one top directory as Argos' index ships them.
Its translations are nonsense; what runs is the real install -> load -> translate path.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from ctranslate2.specs import transformer_spec

from commhub.translate.apertium import default_modes_dir

APERTIUM_MODES = default_modes_dir()
needs_apertium = pytest.mark.skipif(
    APERTIUM_MODES is None or not (APERTIUM_MODES / "eng-spa.mode").is_file(),
    reason="needs Debian packages apertium and apertium-eng-spa",
)

D_MODEL = 16
FFN = 32
CORPUS = [
    "where is the city hall",
    "the weather is nice today",
    "good morning and welcome to the meeting",
    "please speak a little slower",
    "my name is alice and i live in seoul",
    "the train leaves at ten thirty",
    "thank you very much for coming",
    "can you hear me now",
]


def _train_sentencepiece(dest: Path) -> list[str]:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_writer=model,
        vocab_size=64,
        model_type="bpe",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    dest.write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(dest))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def _fill(spec: object, rng: np.random.Generator, vocab: int) -> None:
    """Give every required weight of the spec a random value of the right shape."""
    enc, dec = spec.encoder, spec.decoder  # type: ignore[attr-defined]
    d, f = D_MODEL, FFN

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def norm(layer: object) -> None:
        layer.gamma = np.ones(d, np.float32)  # type: ignore[attr-defined]
        layer.beta = np.zeros(d, np.float32)  # type: ignore[attr-defined]

    def ffn(layer: object) -> None:
        norm(layer.layer_norm)  # type: ignore[attr-defined]
        layer.linear_0.weight = w(f, d)  # type: ignore[attr-defined]
        layer.linear_1.weight = w(d, f)  # type: ignore[attr-defined]

    enc.embeddings[0].weight = w(vocab, d)
    norm(enc.layer_norm)
    for layer in enc.layer:
        norm(layer.self_attention.layer_norm)
        layer.self_attention.linear[0].weight = w(3 * d, d)
        layer.self_attention.linear[1].weight = w(d, d)
        ffn(layer.ffn)
    dec.embeddings.weight = w(vocab, d)
    norm(dec.layer_norm)
    dec.projection.weight = w(vocab, d)
    for layer in dec.layer:
        norm(layer.self_attention.layer_norm)
        layer.self_attention.linear[0].weight = w(3 * d, d)
        layer.self_attention.linear[1].weight = w(d, d)
        norm(layer.attention.layer_norm)
        layer.attention.linear[0].weight = w(d, d)
        layer.attention.linear[1].weight = w(2 * d, d)
        layer.attention.linear[2].weight = w(d, d)
        ffn(layer.ffn)


def build_argos_package(dest: Path, source: str, target: str, seed: int = 0) -> Path:
    """Write ``translate-<source>_<target>.argosmodel`` into ``dest``; returns its path."""
    name = f"translate-{source}_{target}-1_0"
    archive = dest / f"translate-{source}_{target}.argosmodel"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / name
        root.mkdir()
        pieces = _train_sentencepiece(root / "sentencepiece.model")
        spec = transformer_spec.TransformerSpec.from_config((1, 1), 2)
        _fill(spec, np.random.default_rng(seed), len(pieces))
        spec.register_source_vocabulary(pieces)
        spec.register_target_vocabulary(pieces)
        spec.validate()
        (root / "model").mkdir()
        spec.save(str(root / "model"))
        metadata = {
            "package_version": "1.0",
            "argos_version": "1.5",
            "from_code": source,
            "from_name": source,
            "to_code": target,
            "to_name": target,
            "type": "translate",
        }
        (root / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(root.rglob("*")):
                zf.write(path, path.relative_to(Path(tmp)).as_posix())
    return archive


@pytest.fixture(scope="session")
def argos_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once per session: "en-es" for direct tests, "xx-en" + "en-yy" for the pivot."""
    dest = tmp_path_factory.mktemp("argosmodels")
    pairs = ["en-es", "xx-en", "en-yy"]
    return {
        pair: build_argos_package(dest, *pair.split("-"), seed=i) for i, pair in enumerate(pairs)
    }
