"""Word-level tokenizers trained from scratch with ``tokenizers`` (tiny world and tests)."""

from __future__ import annotations

from typing import Iterable

SPECIAL_TOKENS = ["<unk>", "<pad>", "<eos>"]


def train_word_tokenizer(texts: Iterable[str], min_frequency: int = 1):
    """A fast word-level tokenizer over lower-cased words and punctuation.

    Returns a ``transformers.PreTrainedTokenizerFast`` with ``<unk>``, ``<pad>`` and ``<eos>``
    (ids 0, 1, 2), saved and reloaded by ``save_pretrained`` / ``AutoTokenizer`` like any other.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=min_frequency)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<eos>", bos_token="<eos>")
